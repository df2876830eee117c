#!/usr/bin/env python3
"""Mint reference tokens with AuthX and flask-jwt-extended, for jwtgate's verifier tests.

    python mint.py --secret S [--now T] [--sub alice] [--explain]

Prints ONE JSON object on stdout: {case name: compact JWT, ..., "_meta": {...}}.
Every token is produced by the library's own public API (AuthX.create_access_token /
create_refresh_token, flask_jwt_extended.create_access_token / create_refresh_token),
HS256 with the given secret, both libraries configured with token locations
headers + cookies and CSRF protection on, exactly as a cookie-capable app would be.
--now T (unix seconds, int or float) freezes the libraries' clocks at T (freezegun), so
iat/exp/fresh are computed from T; without it the real clock is used (also frozen once,
so every token of a run shares one "now" = _meta.minted_at). --explain prints every
token's header and claims, with JSON types, to stderr.

What the libraries put into tokens (observed with the pinned versions, authx 1.7.1 /
Flask-JWT-Extended 4.7.4 / PyJWT 2.15.1; `--explain` shows it). The JOSE header is always
{"alg":"HS256","typ":"JWT"} (no kid). "now" below is the (frozen) minting time.

AuthX, in emitted key order:
  access : sub str, jti str(uuid4), type "access", fresh bool, csrf str,
           iat INT (= int(now), truncated), exp FLOAT (now + 15 min, keeps the fraction:
           1700000900.0 when now is integral -- serialised with ".0", so not a JSON integer)
  refresh: sub, jti, type "refresh", csrf, iat INT, exp FLOAT (now + 20 days).
           NO "fresh" claim at all in refresh tokens.
  - exp - iat is 900 + frac(now), i.e. up to 900.999 s for a 900 s TTL (iat truncated, exp not).
  - no nbf (AuthXConfig.JWT_ENCODE_NBF exists but the encoder never reads it);
    no iss/aud unless JWT_ENCODE_ISSUER / JWT_ENCODE_AUDIENCE are set.
  - csrf is ALWAYS present: a uuid4 iff "cookies" is in JWT_TOKEN_LOCATION and
    JWT_COOKIE_CSRF_PROTECT, otherwise the EMPTY STRING "" (case authx_access_headers_only).
  - data={...} is merged at top level after the registered claims (it could even override
    sub/exp); scopes=[...] adds a "scopes" string-array claim (case authx_access_scopes).
  - expiry accepts datetime | timedelta | number; a negative timedelta gives an expired token.
  - Verifying, AuthX parses claims with pydantic: sub must be a string, fresh must be a bool
    (or 0/1): a flask-style numeric fresh is a decode error (HTTP 422); missing type =>
    "access"; missing csrf => "" (then cookie-mode CSRF never matches).
flask-jwt-extended, in emitted key order:
  access : fresh bool | FLOAT (fresh=timedelta -> now + delta, fraction kept),
           iat INT, jti str(uuid4), type "access", sub (the identity as given; must be a
           str -- JWT_VERIFY_SUB=True makes PyJWT reject other types on decode),
           nbf INT (== iat; JWT_ENCODE_NBF defaults to True), csrf str(uuid4),
           exp INT (truncated; exp - iat == 900 exactly), then additional_claims.
  refresh: the same set with type "refresh" and fresh false (flask always writes "fresh").
  - csrf is present iff JWT_COOKIE_CSRF_PROTECT (default True), REGARDLESS of
    JWT_TOKEN_LOCATION: a headers-only app emits it too (case flask_access_headers_only).
  - fresh=timedelta(seconds=-60) is accepted and yields a fresh timestamp in the past.
  - expires_delta=False (or timedelta(0), which is falsy) omits exp entirely
    (case flask_access_no_exp); both libraries accept such a token.

Cases (all with sub = --sub, default "alice"):
  authx_access_fresh, authx_access, authx_refresh, authx_access_expired (exp = now-60),
  authx_access_extra (fresh, data roles=["admin","dev"], tenant="acme"),
  authx_access_scopes (scopes=["read","write"]), authx_access_headers_only (csrf ""),
  flask_access_fresh, flask_access, flask_access_fresh_until (fresh = now+600.0),
  flask_access_fresh_until_past (fresh = now-60.0), flask_refresh,
  flask_access_expired (exp = now-60), flask_access_claims (roles=["admin","dev"]),
  flask_access_no_exp, flask_access_headers_only (csrf still present);
  "_meta": {"authx", "flask_jwt_extended", "pyjwt": versions, "minted_at": now (int when
  --now is integral, else float), "sub"}.
"""

import argparse
import base64
import json
import os
import sys
import time
import warnings
from datetime import datetime, timedelta, timezone

# AuthXConfig is a pydantic BaseSettings: JWT_* environment variables would silently
# override the configuration below. Tokens must depend on the arguments only.
for _k in [k for k in os.environ if k.upper().startswith("JWT_")]:
    del os.environ[_k]

from importlib.metadata import version as _dist_version  # noqa: E402

from freezegun import freeze_time  # noqa: E402
from jwt.warnings import InsecureKeyLengthWarning  # noqa: E402

# PyJWT >= 2.10 warns (only warns) about HMAC keys < 32 bytes; tests use short secrets.
warnings.simplefilter("ignore", InsecureKeyLengthWarning)

ROLES = ["admin", "dev"]


def mint_authx(secret, sub):
    from authx import AuthX, AuthXConfig

    def make(locations):
        return AuthX(
            config=AuthXConfig(
                JWT_ALGORITHM="HS256",
                JWT_SECRET_KEY=secret,
                JWT_TOKEN_LOCATION=locations,
                JWT_COOKIE_CSRF_PROTECT=True,
            )
        )

    auth = make(["headers", "cookies"])
    headers_only = make(["headers"])
    return {
        "authx_access_fresh": auth.create_access_token(uid=sub, fresh=True),
        "authx_access": auth.create_access_token(uid=sub, fresh=False),
        "authx_refresh": auth.create_refresh_token(uid=sub),
        # expiry accepts datetime | timedelta | number; a negative timedelta is allowed.
        "authx_access_expired": auth.create_access_token(uid=sub, expiry=timedelta(seconds=-60)),
        "authx_access_extra": auth.create_access_token(
            uid=sub, fresh=True, data={"roles": ROLES, "tenant": "acme"}
        ),
        "authx_access_scopes": auth.create_access_token(uid=sub, scopes=["read", "write"]),
        "authx_access_headers_only": headers_only.create_access_token(uid=sub),
    }


def mint_flask(secret, sub):
    from flask import Flask
    from flask_jwt_extended import JWTManager, create_access_token, create_refresh_token

    def make(locations):
        app = Flask("jwtgate-mint-" + "-".join(locations))
        app.config.update(
            JWT_ALGORITHM="HS256",
            JWT_SECRET_KEY=secret,
            JWT_TOKEN_LOCATION=locations,
            JWT_COOKIE_CSRF_PROTECT=True,
        )
        JWTManager(app)
        return app

    out = {}
    with make(["headers", "cookies"]).app_context():
        out["flask_access_fresh"] = create_access_token(identity=sub, fresh=True)
        out["flask_access"] = create_access_token(identity=sub, fresh=False)
        out["flask_access_fresh_until"] = create_access_token(
            identity=sub, fresh=timedelta(minutes=10)
        )
        # The API takes a negative timedelta too: fresh becomes a timestamp in the past.
        out["flask_access_fresh_until_past"] = create_access_token(
            identity=sub, fresh=timedelta(seconds=-60)
        )
        out["flask_refresh"] = create_refresh_token(identity=sub)
        out["flask_access_expired"] = create_access_token(
            identity=sub, expires_delta=timedelta(seconds=-60)
        )
        out["flask_access_claims"] = create_access_token(
            identity=sub, additional_claims={"roles": ROLES}
        )
        out["flask_access_no_exp"] = create_access_token(identity=sub, expires_delta=False)
    with make(["headers"]).app_context():
        out["flask_access_headers_only"] = create_access_token(identity=sub)
    return out


def _b64json(part):
    raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    return raw.decode(), json.loads(raw)


def _jtype(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null" if v is None else type(v).__name__


def explain(tokens, now):
    for name, tok in tokens.items():
        if name.startswith("_"):
            continue
        h_raw, _ = _b64json(tok.split(".")[0])
        p_raw, p = _b64json(tok.split(".")[1])
        print(f"== {name}", file=sys.stderr)
        print(f"   header : {h_raw}", file=sys.stderr)
        print(f"   payload: {p_raw}", file=sys.stderr)
        for k, v in p.items():
            note = ""
            if k in ("iat", "exp", "nbf") or (k == "fresh" and _jtype(v) in ("int", "float")):
                note = f"  (now{v - now:+.3f}s)"
            print(f"     {k:<7} {_jtype(v):<6} {json.dumps(v)}{note}", file=sys.stderr)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--secret", required=True, help="shared HS256 secret")
    ap.add_argument("--now", type=float, default=None, help="unix time to mint at (default: now)")
    ap.add_argument("--sub", default="alice", help="subject / identity (default alice)")
    ap.add_argument("--explain", action="store_true", help="print decoded claims to stderr")
    args = ap.parse_args(argv)

    now = time.time() if args.now is None else args.now
    if args.now is not None and float(args.now).is_integer():
        now = int(args.now)
    with freeze_time(datetime.fromtimestamp(now, tz=timezone.utc)):
        tokens = {}
        tokens.update(mint_authx(args.secret, args.sub))
        tokens.update(mint_flask(args.secret, args.sub))
    tokens["_meta"] = {
        "authx": _dist_version("authx"),
        "flask_jwt_extended": _dist_version("Flask-JWT-Extended"),
        "pyjwt": _dist_version("PyJWT"),
        "minted_at": now,
        "sub": args.sub,
    }
    if args.explain:
        explain(tokens, now)
    json.dump(tokens, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
