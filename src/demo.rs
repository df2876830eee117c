//! `jwtgate demo`: the gateway in front of a small built-in app, so a person
//! sees the login handoff, the silent refresh and the step-up login. Memory
//! store, an ephemeral key, a 20-second access token.

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, LOCATION};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::clock::SystemClock;
use crate::store::MemoryStore;
use crate::Gateway;

/// The gateway config the demo runs with; `{app}` and `{secret}` are filled in.
const DEMO_CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
watch_config = false

[tokens]
secret = "{secret}"
access_ttl = "{access_ttl}"
refresh_ttl = "1h"

[cookies]
secure = false            # the demo is plain http on localhost

[sessions]
login_response = "upstream"
refresh_ahead = "{refresh_ahead}"
max_session = "1h"

[store]
backend = "memory"

[forward]
claims = { sub = "X-Auth-Subject", fresh = "X-Auth-Fresh", name = "X-Auth-Name" }

[errors]
login_url = "/login"

[[upstreams]]
name = "demo"
urls = ["http://{app}"]

[[routes]]
path = "/"
policy = "public"
upstream = "demo"
methods = ["GET", "HEAD"]

[[routes]]
path = "/login"
policy = "public"
upstream = "demo"
methods = ["GET", "HEAD"]

[[routes]]
path = "/favicon.ico"
policy = "public"
upstream = "demo"
methods = ["GET", "HEAD"]

[[routes]]
path = "/login"
handler = "login"
upstream = "demo"

[[routes]]
path = "/refresh"
handler = "refresh"
methods = ["GET", "POST"]

[[routes]]
path = "/logout"
handler = "logout"

[[routes]]
path = "/protected"
policy = "access"
upstream = "demo"

[[routes]]
path = "/api/**"
policy = "access"
upstream = "demo"

[[routes]]
path = "/account"
policy = "fresh"
max_age = "5m"
upstream = "demo"
"#;

/// Starts the demo app and the gateway; serves until Ctrl-C.
pub async fn run(listen: SocketAddr, access_ttl: &str) -> std::io::Result<()> {
    let ttl = humantime::parse_duration(access_ttl)
        .map_err(|e| std::io::Error::other(format!("--access-ttl {access_ttl:?}: {e}")))?;
    let app = TcpListener::bind("127.0.0.1:0").await?;
    let app_addr = app.local_addr()?;
    tokio::spawn(serve_app(app));
    let secret = random_secret()?;
    let ahead = format!("{}ms", (ttl.as_millis() / 4).max(1));
    let text = DEMO_CONFIG
        .replace("{app}", &app_addr.to_string())
        .replace("{secret}", &secret)
        .replace("{access_ttl}", access_ttl)
        .replace("{refresh_ahead}", &ahead);
    let runtime = crate::config::parse(&text, std::path::Path::new("."))
        .map_err(|e| std::io::Error::other(format!("demo config: {e}")))?;
    let gateway = Gateway::new(runtime, Arc::new(MemoryStore::new()), Arc::new(SystemClock));
    // Only a port in use falls back (a second demo, a dev server): an address
    // that is not this machine's, or a port it may not bind, is an error.
    let listener = match TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => TcpListener::bind("127.0.0.1:0").await?,
        Err(e) => return Err(std::io::Error::new(e.kind(), format!("--listen {listen}: {e}"))),
    };
    let addr = listener.local_addr()?;
    // A demo whose stdout went away (`| head -1`) still serves.
    let _ = writeln!(
        std::io::stdout(),
        "jwtgate demo: open http://{addr}/  (log in as test / test; access tokens live {access_ttl})"
    );
    crate::run(listener, gateway, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}

/// 32 random bytes, hex: the demo's signing secret. A failed RNG is an
/// error, never a key of zeros.
fn random_secret() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| std::io::Error::other("the system's random generator failed"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

async fn serve_app(listener: TcpListener) {
    loop {
        let (stream, _) = crate::server::accept(&listener).await;
        tokio::spawn(async move {
            let svc = service_fn(app);
            let _ =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

type AppResponse = Response<Full<Bytes>>;

fn page(status: StatusCode, title: &str, body: &str) -> AppResponse {
    let html = format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{title}</title>\
         <style>body{{font:16px system-ui;max-width:40em;margin:3em auto}}code,pre{{background:#f3f3f3;padding:.2em}}</style>\
         </head><body><h1>{title}</h1>{body}\
         <p><a href=/>home</a> · <a href=/protected>protected</a> · <a href=/account>account (fresh)</a></p></body></html>"
    );
    let mut resp = Response::new(Full::new(Bytes::from(html)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, http::HeaderValue::from_static("text/html; charset=utf-8"));
    resp
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> &'a str {
    req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("-")
}

async fn app(req: Request<Incoming>) -> Result<AppResponse, Infallible> {
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/") => page(StatusCode::OK, "jwtgate demo", INDEX),
        (&Method::GET, "/login") => page(StatusCode::OK, "Log in", LOGIN_FORM),
        (&Method::GET, "/favicon.ico") => {
            let mut resp = Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            resp
        }
        (&Method::POST, "/login") => login(req).await,
        (&Method::GET, "/protected") => {
            let body = format!(
                "<p>The gateway verified your session and told this app who you are:</p>\
                 <pre>X-Auth-Subject: {}\nX-Auth-Name: {}\nX-Auth-Fresh: {}</pre>{PROTECTED}",
                header(&req, "x-auth-subject"),
                header(&req, "x-auth-name"),
                header(&req, "x-auth-fresh")
            );
            page(StatusCode::OK, "Protected page", &body)
        }
        (&Method::GET, "/api/whoami") => {
            let json = serde_json::json!({
                "sub": header(&req, "x-auth-subject"),
                "fresh": header(&req, "x-auth-fresh"),
            });
            let mut resp = Response::new(Full::new(Bytes::from(json.to_string())));
            resp.headers_mut().insert(CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
            resp
        }
        (&Method::GET, "/account") => page(
            StatusCode::OK,
            "Account (fresh login only)",
            &format!(
                "<p>Only a login within 5 minutes opens this page. X-Auth-Fresh: {}</p>",
                header(&req, "x-auth-fresh")
            ),
        ),
        _ => page(StatusCode::NOT_FOUND, "Not found", ""),
    };
    Ok(resp)
}

/// Checks test/test and names the user in the identity header; the gateway
/// turns that into a session. The form's answer is a redirect; a JSON login
/// (the seeds' `curl --json '{"username": "test", "password": "test"}'`)
/// gets JSON, and the tokens in the cookies jwtgate sets.
async fn login(req: Request<Incoming>) -> AppResponse {
    let json = header(&req, "content-type").starts_with("application/json");
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let form: Vec<(String, String)> = if json {
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        ["username", "password"]
            .iter()
            .filter_map(|k| Some((k.to_string(), value.get(k)?.as_str()?.to_owned())))
            .collect()
    } else {
        form_urlencoded::parse(&body).into_owned().collect()
    };
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let valid = field("username") == "test" && field("password") == "test";
    if json {
        let (status, answer) = if valid {
            (StatusCode::OK, serde_json::json!({"msg": "logged in; the tokens are in the cookies"}))
        } else {
            (StatusCode::UNAUTHORIZED, serde_json::json!({"detail": "Wrong username or password"}))
        };
        let mut resp = Response::new(Full::new(Bytes::from(answer.to_string())));
        *resp.status_mut() = status;
        resp.headers_mut().insert(CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        if valid {
            resp.headers_mut().insert("x-jwtgate-identity", http::HeaderValue::from_static(IDENTITY));
        }
        return resp;
    }
    if !valid {
        return page(
            StatusCode::UNAUTHORIZED,
            "Log in",
            &format!("<p><b>Wrong username or password.</b></p>{LOGIN_FORM}"),
        );
    }
    let requested = field("next");
    let next = safe_next(&requested);
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = http::HeaderValue::from_str(next) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp.headers_mut().insert("x-jwtgate-identity", http::HeaderValue::from_static(IDENTITY));
    resp
}

/// Who `test` is, as the app tells jwtgate.
const IDENTITY: &str = r#"{"sub":"test","name":"Test User"}"#;

/// Only a local path: never an open redirect to another site (`//host` and
/// `/\host` both leave the site in a browser).
fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/') && !next.starts_with("//") && !next.contains('\\');
    if local {
        next
    } else {
        "/protected"
    }
}

const INDEX: &str = "<p>This page is public. The app behind jwtgate has no authentication code: \
it checks a password once and answers with an identity header; jwtgate does the rest.</p>\
<p><a href=/login>Log in</a> as <code>test</code> / <code>test</code>.</p>";

const LOGIN_FORM: &str = "<form method=post action=/login>\
<input type=hidden name=next id=next>\
<p><label>Username <input name=username value=test></label></p>\
<p><label>Password <input name=password type=password></label></p>\
<p><button id=submit>Log in</button></p></form>\
<script>document.getElementById('next').value=new URLSearchParams(location.search).get('next')||'/protected'</script>";

const PROTECTED: &str = "<p>The access token is short-lived. Wait, then click: the gateway refreshes \
the session silently (watch the cookies rotate), the app never sees an expired token.</p>\
<p><button id=api onclick=\"fetch('/api/whoami').then(r=>r.text().then(t=>document.getElementById('out').textContent=r.status+' '+t))\">Call the API</button></p>\
<pre id=out></pre>\
<p><button id=logout onclick=\"fetch('/logout',{method:'POST',headers:{'X-CSRF-TOKEN':(document.cookie.match(/csrf_access_token=([^;]+)/)||[])[1]||''}}).then(r=>r.text()).then(()=>location='/')\">Log out</button></p>";

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_is_a_local_path_or_the_protected_page() {
        assert_eq!(safe_next("/protected?x=1"), "/protected?x=1");
        assert_eq!(safe_next("/account"), "/account");
        for bad in ["//evil.test/", "/\\evil.test", "https://evil.test/", "", "evil"] {
            assert_eq!(safe_next(bad), "/protected", "{bad}");
        }
    }
}
