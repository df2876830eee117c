//! Key files the key rules must handle but aws-lc-rs cannot generate: an RSA
//! key below 2048 bits and the legacy SEC1 / PKCS#1 encodings. Test-only keys,
//! generated with OpenSSL 3 for this suite; never use them for anything else.

/// `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024`
pub(super) const RSA_1024_PKCS8: &str = "\
-----BEGIN PRIVATE KEY-----
MIICdgIBADANBgkqhkiG9w0BAQEFAASCAmAwggJcAgEAAoGBAMiY8vCWvGwDX36X
PmZHJz38v0BPbLyO+EYc7QUZrbg8Sgo3+meFFbbEFY5QGo7U6u11bUGvIEkNzl9p
TLL5C2s47A7KafWMXEZy0WCJ8DQjqy5bDSaoPNmMjf+RZTXFNyLMKI+X2UBYybQ6
t/oDGd2BU7hYZjxFnMU4M+MlJof9AgMBAAECgYByaeqHFzK5WOMqzREmPQdA79wV
zjdzBQjO1MjL0+2l251PXsZQLTRJXmX9GetL9F1au1Np131OrbU77k909V9w8goZ
M8umIRae6aYVq9XzFQnl8xrsmZyQYN4bPWWQFoENl1Xz25GeZI1LoOrJQBHNES9z
mKeeARRUBNxVCXASAQJBAOp/VEEklSKqP2hWbM+aIAa2f7h+0WHEr+XwjRw+Dffy
7+yKRFBefMqavyoLRvq2ERffrpUaxUznKD0U2zrbwZ0CQQDa/ddzn6e3G03Mc+OU
V8jQIqgiumKc1fJ/CmTDjM4/0ljk6JfO/TrJvacx/zk+1DCLjj/IpF5W2QbMDiug
EsHhAkByg2OdvEOn/gOg7DOO3fEt1glhC20slWRgoawHUrZ3kwdfN9ZMeRfvyMn5
ujAbVrXaNr2Gyt/2whuAWKMGhzJxAkAzJs/IhiZastn9Q6SI5ehWFYJIeljGYYL/
AaJ/usgCSFPTRDERfDzbGp2PJBpu/olIT7W+XAZdKtxXlYfDIB6BAkEA20rkcfkc
M2YCDMbq66r+GmRRtRKTrC8ZhccSpM2ExwVroQ59Bk37KjpfrCIrZYjYvxwwpXmH
oBDIu7094G4bfQ==
-----END PRIVATE KEY-----
";

/// `openssl ecparam -genkey -name prime256v1`: an EC PARAMETERS block, then SEC1.
pub(super) const P256_SEC1_WITH_PARAMS: &str = "\
-----BEGIN EC PARAMETERS-----
BggqhkjOPQMBBw==
-----END EC PARAMETERS-----
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIDdxKY8/1El33C+YvulRkIzHgZ8/Z/sU4GHiS7k4nh2soAoGCCqGSM49
AwEHoUQDQgAEkwkQJNxhXLIUud5vHLp5GiZ9iy6OXDIYrPoTlwqCGP9ZU7QVS9Pp
d0ugtTca5DyleeDBQv8fqoDq7Oz2L7cK3Q==
-----END EC PRIVATE KEY-----
";

/// `openssl genrsa -traditional 2048`
pub(super) const RSA_2048_PKCS1: &str = "\
-----BEGIN RSA PRIVATE KEY-----
MIIEogIBAAKCAQEAmk/n30yVtc3ypLIHdh4/XqhR98FM3BjU6syrp9LuOXq8SznS
f31g73gkvZvNqYs1auGLzC+MM3oUMz+l4ludKbztaM8ndOLTE5oFQqOcD4bGx9Jl
SMInsRh2mUxVZ7v0Awzd2K9306gPqLe/eklglG7rlzad4Dj+dMyomEoXJOzOFFge
2q1mxiS6Cdpu2tEBPNeRsxkA0qk6BpGKXargKbK7F+5+AYlKk07p0S7gOpdYuZcV
IkdKViNu3VkzJBWzfM51EzjsPmWdeBxCWVMdHROWeuhMNrUAKPfI8l8NmaaG4F6I
3StHro1S2Tcapd9xJQE2qD5ZB6Cah8XAsY46HwIDAQABAoIBAAtfFxG8BY5LunVL
j0Qzj2zsz3mH+59+jvYslfu8jgSbWFPc03fEqAeNnXuBh0LWuN2C+HfYCydh+Coc
px9KrAa+3unp1hkFfBOGNpwGDYKRZoWkKgWWFTG2QUsjtml6Ds3IvXJx380vpdPD
kq8yyBS4JdFTW4gB+zJlQIlUcGculONGCdc7vGKpJeXUKEbGCvUlk7M99IpbcM2a
oGnDNz8M8rO/Fhp7b49CzsgWojhGpfrycoGCUlZt1ydjCfjPnkOtEf0RJiGFMaUD
cApRzGGthhJAfvGBITjIiO/9oJtVJd30qiLXOLhiv/N3AYutUbqo9MFW8Ds0a1He
KbTlNeECgYEAzfDoKU/JxCFXUw5RnyetXj443TxE1PA9SjNZ22yTVbmYyn3pPaa/
fxansqL4zkBCGHwClG99W4hx3+xpzWIcqAiM8x9+gCqypydI03Zk0UKmmTVCXg0a
5obiVMSmaUHixLHJYubKJTHSb+jovBtcq+J+saeDzsPXhf+TJoR3Ln8CgYEAv9JJ
Y90FNZYQgbnhsw2G0/1zson7mBU0MNzr70W2MSHubwp19BK4764/sIUze6c5YcNE
3IKCEA1s/Rr1vUf4nd81GFqOOtm31IMtwVN5dP0EqEKEZIdDLqe99AFFXzJT7bIX
ukAzM0+6awYzVbtq3n4UnOTBxZlie5cKayfEZGECgYAcJJvVaW3tO5EvbHmDAm0S
v/YNZbsSTnJRvYq+DaxkvqQ+p85D+pGY0IPCSbsulGFz7x57InFDHPZS33/l7U51
OBXq85bZ9PvNE/VD0J4earlRnpGfQLM4ZZ5wbx8+qx5OOu2GcnuVcaWMXYvQiPy1
EJK3vGiqzOCbEz4MuXWACQKBgGTeEVV//aNF+/wbYMGk1UdYOaSixjgcvksLgM1b
XQjNDPI7D/d+eN0gRcFu6bmWH6h25BkIT5hdVvhpWttjoypxGxxpUe1EW1RWfpLw
cCfCfNZ10+SA9CTudAaBPJdogZW2Vp/L7qCGxkJNCmWEnhfNOM2fxP1BQPY4YHQk
fzNBAoGAFp0nUa44/iGozG51jI7+jbA3oJouz8gBA/Uc6POGbjCk03hh69i6q/TU
hBf4Q8A+w0PuofQW1B7JsDBS+ShLk9CkxcK7SGkJXgeh+QGpG7yR0/jv8Yoz3TDP
2WeP6ESLvuUR4FNe2u8uycxeem5QDuzgHS8ElPGjrWY/rZtkblI=
-----END RSA PRIVATE KEY-----
";

/// `openssl rsa -in … -RSAPublicKey_out` of [`RSA_2048_PKCS1`].
pub(super) const RSA_2048_PKCS1_PUBLIC: &str = "\
-----BEGIN RSA PUBLIC KEY-----
MIIBCgKCAQEAmk/n30yVtc3ypLIHdh4/XqhR98FM3BjU6syrp9LuOXq8SznSf31g
73gkvZvNqYs1auGLzC+MM3oUMz+l4ludKbztaM8ndOLTE5oFQqOcD4bGx9JlSMIn
sRh2mUxVZ7v0Awzd2K9306gPqLe/eklglG7rlzad4Dj+dMyomEoXJOzOFFge2q1m
xiS6Cdpu2tEBPNeRsxkA0qk6BpGKXargKbK7F+5+AYlKk07p0S7gOpdYuZcVIkdK
ViNu3VkzJBWzfM51EzjsPmWdeBxCWVMdHROWeuhMNrUAKPfI8l8NmaaG4F6I3StH
ro1S2Tcapd9xJQE2qD5ZB6Cah8XAsY46HwIDAQAB
-----END RSA PUBLIC KEY-----
";
