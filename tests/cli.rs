//! The `jwtgate` command line (DESIGN.md §2), run as the real binary: exit
//! codes and what an operator reads on stdout / stderr. Every test works in
//! its own temp dir and leaves no process behind (see [`Running`]).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_jwtgate");

/// What one finished command printed.
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "exit code\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
}

/// The binary with a clean environment for what it reads: no secret, no log filter.
fn jwtgate(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).env_remove("JWTGATE_SECRET").env_remove("RUST_LOG");
    cmd
}

fn output(cmd: &mut Command) -> Out {
    let out = cmd.stdin(Stdio::null()).output().expect("run jwtgate");
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.toml.example")
}

/// 48 random alphanumeric characters, as `openssl rand` would give an operator.
fn secret48() -> String {
    let hex = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    hex[..48].to_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

/// A minimal valid config around `tokens` (the `[tokens]` body) and `routes`.
fn config(tokens: &str, routes: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:8080\"\nwatch_config = false\n\n\
         [tokens]\n{tokens}\n\n[store]\nbackend = \"memory\"\n\n\
         [[upstreams]]\nname = \"app\"\nurls = [\"http://127.0.0.1:9\"]\n\n{routes}"
    )
}

const CATCH_ALL: &str = "[[routes]]\npath = \"/**\"\npolicy = \"access\"\nupstream = \"app\"\n";

// ---------------------------------------------------------------- check

#[test]
fn check_accepts_the_example_and_prints_every_route() {
    let dir = tempdir();
    let out =
        output(jwtgate(dir.path()).env("JWTGATE_SECRET", secret48()).arg("check").arg("-c").arg(example()));
    out.expect_code(0);
    assert!(out.stdout.contains(": ok"), "{}", out.stdout);
    let text = std::fs::read_to_string(example()).unwrap();
    let parsed: toml::Table = toml::from_str(&text).unwrap();
    let routes = parsed["routes"].as_array().expect("the example has [[routes]]");
    assert!(routes.len() >= 5, "the example shows several routes");
    let table: Vec<&str> = out.stdout.lines().collect();
    for (i, route) in routes.iter().enumerate() {
        let path = route["path"].as_str().unwrap();
        let kind = match (route.get("handler"), route.get("policy")) {
            (Some(h), _) => format!("handler:{}", h.as_str().unwrap()),
            (None, Some(p)) => p.as_str().unwrap().to_owned(),
            (None, None) => panic!("routes[{i}] has neither policy nor handler"),
        };
        let row = table.iter().find(|l| l.starts_with(&format!("{i} ")));
        let row = row.unwrap_or_else(|| panic!("no row for routes[{i}] in\n{}", out.stdout));
        assert!(row.split_whitespace().any(|c| c == path), "routes[{i}] {path} missing: {row}");
        assert!(row.contains(&kind), "routes[{i}] should show {kind}: {row}");
    }
}

/// Output into a pipe nobody reads (`jwtgate check | true`): the commands
/// that print report it and exit 1; none panics (exit 101).
#[test]
fn a_closed_stdout_is_an_error_not_a_panic() {
    let dir = tempdir();
    let secret = secret48();
    let cfg = write(dir.path(), "gw.toml", &config(&format!("secret = \"{secret}\""), CATCH_ALL));
    let cfg = cfg.to_str().unwrap();
    let commands: [&[&str]; 5] = [
        &["check", "-c", cfg],
        &["explain", "-c", cfg, "GET", "/x"],
        &["token", "-c", cfg, "mint", "--sub", "alice"],
        &["token", "-c", cfg, "inspect", "not.a.token"],
        &["keygen", "--alg", "HS256"],
    ];
    for args in commands {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out =
            jwtgate(dir.path()).args(args).stdin(Stdio::null()).stdout(writer).output().expect("run jwtgate");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked") && stderr.contains("Broken pipe"), "{args:?}: {stderr}");
    }
}

/// Errors into a pipe nobody reads (`jwtgate check 2>&1 | true`, a log
/// shipper that went away): still exit 1, never a panic (101). With both
/// output pipes closed nothing can be said, and the exit code is the report.
#[test]
fn a_closed_stderr_still_exits_1_not_101() {
    let dir = tempdir();
    let bad = write(dir.path(), "bad.toml", "[server]\nlisten = 5\n");
    let bad = bad.to_str().unwrap();
    let commands: [&[&str]; 3] = [
        // The config's errors, printed by `check` itself.
        &["check", "-c", bad],
        // A command's error, printed by main.
        &["explain", "-c", bad, "GET", "/x"],
        &["run", "-c", bad],
    ];
    for args in commands {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = jwtgate(dir.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(writer)
            .output()
            .expect("run jwtgate");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
    }
}

#[test]
fn check_without_the_secret_names_the_key_and_the_variable() {
    let dir = tempdir();
    let out = output(jwtgate(dir.path()).arg("check").arg("-c").arg(example()));
    out.expect_code(1);
    let all = out.all();
    assert!(all.contains("tokens.secret") && all.contains("JWTGATE_SECRET"), "{all}");
}

#[test]
fn check_of_a_missing_file_says_so() {
    let dir = tempdir();
    let out = output(jwtgate(dir.path()).args(["check", "-c", "nope.toml"]));
    out.expect_code(1);
    assert!(out.all().contains("nope.toml") && out.all().contains("cannot read"), "{}", out.all());
}

/// Mistakes found by validation: all of them in one run, each with its key path.
#[test]
fn check_lists_every_validation_error_with_its_key_path() {
    let dir = tempdir();
    let secret = "Xq7kP2mZ9wR"; // 11 bytes: too short for HS256
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:8080\"\nshutdown_grace = \"soon\"\n\n\
         [tokens]\nsecret = \"{secret}\"\n\n\
         [[upstreams]]\nname = \"app\"\nurls = [\"http://127.0.0.1:9000\"]\n\n\
         [[routes]]\npath = \"/a\"\npolicy = \"public\"\nupstream = \"app\"\n\n\
         [[routes]]\npath = \"/b\"\nupstream = \"app\"\n\n\
         [[routes]]\npath = \"/c\"\npolicy = \"access\"\nupstream = \"nowhere\"\n"
    );
    let cfg = write(dir.path(), "bad.toml", &text);
    let out = output(jwtgate(dir.path()).arg("check").arg("-c").arg(&cfg));
    out.expect_code(1);
    let all = out.all();
    for key in ["server.shutdown_grace", "tokens.secret", "routes[1].policy", "routes[2].upstream"] {
        assert!(all.contains(&format!("{key}:")), "{key} not reported:\n{all}");
    }
    assert!(all.contains("nowhere") && all.contains("soon"), "errors name the bad values:\n{all}");
    assert!(!all.contains(secret), "the secret leaked:\n{all}");
}

#[test]
fn check_reports_every_unknown_key_with_its_path_and_a_hint() {
    let dir = tempdir();
    let routes = "[[routes]]\npath = \"/a\"\npolcy = \"public\"\npolicy = \"public\"\nupstream = \"app\"\n\n\
                  [[routes]]\npath = \"/b\"\npolicy = \"public\"\nupstreams = \"app\"\nupstream = \"app\"\n";
    let text = config(&format!("secret = \"{}\"\nleway = \"5s\"", secret48()), routes);
    let cfg = write(dir.path(), "gw.toml", &text);
    let out = output(jwtgate(dir.path()).arg("check").arg("-c").arg(&cfg));
    out.expect_code(1);
    let all = out.all();
    for key in ["routes[0].polcy", "routes[1].upstreams", "tokens.leway"] {
        assert!(all.contains(&format!("{key}:")), "{key} not reported:\n{all}");
    }
    assert!(all.contains("\"policy\"") && all.contains("\"leeway\""), "did-you-mean hints:\n{all}");
}

#[test]
fn check_names_the_key_of_a_missing_environment_variable() {
    let dir = tempdir();
    let text =
        config("secret = \"${JWTGATE_TEST_UNSET_A}\"\nissuer = \"${JWTGATE_TEST_UNSET_B}\"", CATCH_ALL);
    let cfg = write(dir.path(), "gw.toml", &text);
    let out = output(jwtgate(dir.path()).arg("check").arg("-c").arg(&cfg));
    out.expect_code(1);
    let all = out.all();
    assert!(all.contains("tokens.secret:") && all.contains("JWTGATE_TEST_UNSET_A"), "{all}");
    assert!(all.contains("tokens.issuer:") && all.contains("JWTGATE_TEST_UNSET_B"), "{all}");
}

/// DESIGN §3: "`jwtgate check` reports all errors at once": a missing
/// `${VAR}`, a mistyped value, an unknown key and an invalid value, in one run
/// (only a TOML syntax error is reported alone).
#[test]

fn check_lists_errors_of_every_kind_in_one_run() {
    let dir = tempdir();
    let secret = "Xq7kP2mZ9wR";
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:8080\"\nshutdown_grace = \"soon\"\n\n\
         [tokens]\nsecret = \"{secret}\"\nissuer = \"${{JWTGATE_TEST_MISSING_VAR}}\"\n\n\
         [[upstreams]]\nname = \"app\"\nurls = [\"http://127.0.0.1:9000\"]\n\n\
         [[routes]]\npath = \"/a\"\npolcy = \"public\"\nupstream = \"app\"\n\n\
         [[routes]]\npath = \"/b\"\nupstream = \"app\"\n\n\
         [[routes]]\npath = \"/c\"\npolicy = \"access\"\nupstream = \"nowhere\"\n"
    );
    let cfg = write(dir.path(), "bad.toml", &text);
    let out = output(jwtgate(dir.path()).arg("check").arg("-c").arg(&cfg));
    out.expect_code(1);
    let all = out.all();
    for key in [
        "routes[0].polcy",
        "tokens.secret",
        "routes[1].policy",
        "routes[2].upstream",
        "server.shutdown_grace",
        "tokens.issuer",
    ] {
        assert!(all.contains(&format!("{key}:")), "{key} not reported:\n{all}");
    }
    assert!(!all.contains(secret), "the secret leaked:\n{all}");
}

/// A secret must never be echoed, even when its `${` is malformed.
#[test]

fn check_never_echoes_a_secret_with_a_malformed_reference() {
    let dir = tempdir();
    let secret = format!("{}${{oops", secret48());
    let cfg = write(dir.path(), "gw.toml", &config(&format!("secret = \"{secret}\""), CATCH_ALL));
    let out = output(jwtgate(dir.path()).arg("check").arg("-c").arg(&cfg));
    out.expect_code(1);
    assert!(out.all().contains("tokens.secret"), "{}", out.all());
    assert!(!out.all().contains(&secret[..48]), "the secret leaked:\n{}", out.all());
}

/// Durations that JWT times (whole seconds) are measured against refuse a
/// fraction, which would be dropped: `reuse_grace = "500ms"` was no grace.
#[test]
fn check_refuses_fractions_of_a_second_where_token_times_are_whole_seconds() {
    let dir = tempdir();
    let tokens = format!("secret = \"{}\"\naccess_ttl = \"1500ms\"\nleeway = \"2.5s\"", secret48());
    let routes =
        "[[routes]]\npath = \"/**\"\npolicy = \"fresh\"\nmax_age = \"90500ms\"\nupstream = \"app\"\n\n\
                  [sessions]\nreuse_grace = \"500ms\"\nidle_timeout = \"1h 1ms\"\n";
    let cfg = write(dir.path(), "gw.toml", &config(&tokens, routes));
    let out = output(jwtgate(dir.path()).arg("check").arg("-c").arg(&cfg));
    out.expect_code(1);
    for key in [
        "tokens.access_ttl",
        "tokens.leeway",
        "routes[0].max_age",
        "sessions.reuse_grace",
        "sessions.idle_timeout",
    ] {
        assert!(out.all().contains(&format!("{key}: ")), "{key}:\n{}", out.all());
    }
    assert!(out.all().contains("whole number of seconds"), "{}", out.all());
}

/// A config error never quotes a secret: not toml's rendering of the line it
/// stopped at (a second `secret = …` left in while rotating, a backslash in a
/// secret or a Redis password), not an upstream URL's password.
#[test]
fn check_never_echoes_a_secret_in_a_config_error() {
    let dir = tempdir();
    let (old, new, redis, upstream) = (secret48(), secret48(), secret48(), secret48());
    let cases = [
        (new.clone(), config(&format!("secret = \"{old}\"\nsecret = \"{new}\""), CATCH_ALL)),
        (old.clone(), config(&format!("secret = \"{old}\\Q\""), CATCH_ALL)),
        (
            redis.clone(),
            config(&format!("secret = \"{old}\""), CATCH_ALL).replace(
                "backend = \"memory\"",
                &format!("backend = \"redis\"\nurl = \"redis://:{redis}\\x@10.0.0.5/0\""),
            ),
        ),
        (
            upstream.clone(),
            config(&format!("secret = \"{old}\""), CATCH_ALL)
                .replace("http://127.0.0.1:9", &format!("http://svc:{upstream}@127.0.0.1:9")),
        ),
        (
            upstream.clone(),
            config(&format!("secret = \"{old}\""), CATCH_ALL)
                .replace("http://127.0.0.1:9", &format!("http://127.0.0.1:9/?key={upstream}")),
        ),
        // A secret written without quotes: serde's type error quotes values.
        ("8647302915".to_owned(), config("secret = 8647302915", CATCH_ALL)),
        // A string where an array belongs: serde quotes it in double quotes,
        // escapes and all.
        (
            upstream.clone(),
            config(&format!("secret = \"{old}\""), CATCH_ALL).replace(
                "urls = [\"http://127.0.0.1:9\"]",
                &format!("urls = \"http://svc:x\\\"{upstream}@127.0.0.1:9\""),
            ),
        ),
    ];
    for (i, (secret, text)) in cases.iter().enumerate() {
        let cfg = write(dir.path(), "gw.toml", text);
        let out = output(jwtgate(dir.path()).arg("check").arg("-c").arg(&cfg));
        out.expect_code(1);
        let all = out.all();
        let located =
            ["line ", "urls[0]", "upstreams[0].urls", "tokens.secret"].iter().any(|at| all.contains(at));
        assert!(located, "case {i}: the error names no place:\n{all}");
        assert!(!all.contains(secret.as_str()), "case {i}: the secret leaked:\n{all}");
    }
}

// ---------------------------------------------------------------- explain

fn explain(method: &str, url: &str) -> Out {
    let dir = tempdir();
    output(
        jwtgate(dir.path())
            .env("JWTGATE_SECRET", secret48())
            .arg("explain")
            .arg("-c")
            .arg(example())
            .args([method, url]),
    )
}

/// The value printed after `label:` on its own line.
fn field<'a>(out: &'a Out, label: &str) -> &'a str {
    let prefix = format!("{label}:");
    let line = out.stdout.lines().find(|l| l.starts_with(&prefix));
    line.unwrap_or_else(|| panic!("no {label:?} line in\n{}", out.all()))[prefix.len()..].trim()
}

#[test]
fn explain_shows_route_policy_and_the_stripped_upstream_path() {
    let out = explain("GET", "/static/css/app.css?v=3");
    out.expect_code(0);
    assert_eq!(field(&out, "canonical path"), "/static/css/app.css");
    assert_eq!(field(&out, "route"), "routes[0] /static/**");
    assert_eq!(field(&out, "policy"), "public");
    assert_eq!(field(&out, "upstream"), "app /css/app.css?v=3");

    let out = explain("GET", "/admin/users");
    out.expect_code(0);
    assert_eq!(field(&out, "route"), "routes[4] /admin/**");
    assert_eq!(field(&out, "policy"), "access");
    assert_eq!(field(&out, "require"), "roles = \"admin\"");
    assert_eq!(field(&out, "upstream"), "app /admin/users");

    let out = explain("POST", "/login");
    out.expect_code(0);
    assert_eq!(field(&out, "handler"), "login");
}

#[test]
fn explain_accepts_an_absolute_url_and_matches_its_host() {
    let dir = tempdir();
    let routes = "[[routes]]\npath = \"/**\"\npolicy = \"public\"\nupstream = \"app\"\n\n\
                  [[routes]]\npath = \"/**\"\nhost = \"app.example.com\"\npolicy = \"access\"\nupstream = \"app\"\n";
    let cfg = write(dir.path(), "gw.toml", &config(&format!("secret = \"{}\"", secret48()), routes));
    let run = |url: &str| output(jwtgate(dir.path()).arg("explain").arg("-c").arg(&cfg).args(["GET", url]));

    let out = run("https://App.Example.COM:8443/x/y?q=1");
    out.expect_code(0);
    assert_eq!(field(&out, "route"), "routes[1] /**", "the host-specific route wins");
    assert_eq!(field(&out, "policy"), "access");
    assert_eq!(field(&out, "upstream"), "app /x/y?q=1");

    let out = run("http://other.example.com/x/y");
    out.expect_code(0);
    assert_eq!(field(&out, "route"), "routes[0] /**");

    let out = run("/x/y");
    out.expect_code(0);
    assert_eq!(field(&out, "route"), "routes[0] /**", "origin-form has no host");

    let out = run("http://app.example.com?q=1");
    out.expect_code(0);
    assert_eq!(field(&out, "canonical path"), "/");
    assert_eq!(field(&out, "upstream"), "app /?q=1");

    let out = run("ftp://app.example.com/x");
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("http(s)://host/path"), "{}", out.all());

    // As the gateway judges a Host: a trailing dot is the same host...
    let out = run("http://app.example.com./x");
    out.expect_code(0);
    assert_eq!(field(&out, "route"), "routes[1] /**");
    // ...and one an upstream would read as another is refused, not matched.
    for url in ["http://app.example.com:x:80/x", "http://app.example.com../x"] {
        let out = run(url);
        out.expect_code(1);
        assert!(out.stdout.contains("rejected: 400"), "{}", out.all());
    }
}

#[test]
fn explain_refuses_a_lower_case_method_as_the_gateway_does() {
    let out = explain("post", "/login");
    out.expect_code(1);
    assert!(out.stdout.contains("rejected: 400"), "{}", out.all());
    assert!(out.stdout.contains("upper-case"), "the reason is shown:\n{}", out.all());
}

/// The gateway answers CONNECT 405 whatever the routes say; so does explain.
#[test]
fn explain_refuses_connect_as_the_gateway_does() {
    let out = explain("CONNECT", "/login");
    out.expect_code(1);
    assert!(out.stdout.contains("rejected: 405 method_not_allowed"), "{}", out.all());
    assert!(!out.stdout.contains("route:"), "{}", out.all());
}

#[test]
fn explain_rejects_dot_segments_with_400_and_the_reason() {
    let out = explain("GET", "/static/../admin");
    out.expect_code(1);
    assert!(out.stdout.contains("rejected: 400"), "{}", out.all());
    assert!(out.stdout.contains("dot segment"), "the reason is shown:\n{}", out.all());
    assert!(!out.stdout.contains("route:"), "{}", out.all());
}

#[test]
fn explain_unknown_path_is_404() {
    let out = explain("GET", "/nowhere/at/all");
    out.expect_code(1);
    assert_eq!(field(&out, "canonical path"), "/nowhere/at/all");
    assert!(out.stdout.contains("404"), "{}", out.all());
}

#[test]
fn explain_wrong_method_is_405_with_allow() {
    let out = explain("DELETE", "/app/refresh");
    out.expect_code(1);
    assert!(out.stdout.contains("405") && out.stdout.contains("Allow: POST"), "{}", out.all());

    let out = explain("DELETE", "/static/app.css");
    out.expect_code(1);
    assert!(out.stdout.contains("Allow: GET, HEAD"), "{}", out.all());
}

#[test]
fn explain_decodes_unreserved_escapes_before_matching() {
    let out = explain("GET", "/%61pi/x");
    out.expect_code(0);
    assert_eq!(field(&out, "canonical path"), "/api/x");
    assert_eq!(field(&out, "route"), "routes[2] /api/**");
    assert_eq!(field(&out, "upstream"), "app /api/x");
}

// ---------------------------------------------------------------- token

/// `jwtgate token …` against `cfg` with `secret` in the environment.
fn token(dir: &Path, cfg: &Path, secret: &str, args: &[&str]) -> Out {
    output(jwtgate(dir).env("JWTGATE_SECRET", secret).arg("token").arg("-c").arg(cfg).args(args))
}

fn mint(dir: &Path, cfg: &Path, secret: &str, args: &[&str]) -> String {
    let mut all = vec!["mint"];
    all.extend_from_slice(args);
    let out = token(dir, cfg, secret, &all);
    out.expect_code(0);
    let token = out.stdout.trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "a compact JWS: {token}");
    token
}

/// The JSON printed after `label:` by `token inspect` (pretty, multi-line).
fn inspected(out: &Out, label: &str) -> Value {
    let start =
        out.stdout.find(&format!("{label}: ")).unwrap_or_else(|| panic!("no {label} in\n{}", out.stdout));
    let rest = &out.stdout[start + label.len() + 2..];
    let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
    stream.next().expect("a JSON value").expect("valid JSON")
}

#[test]
fn minted_tokens_inspect_valid_with_their_claims() {
    let dir = tempdir();
    let secret = secret48();
    let cfg = example();
    let t = mint(
        dir.path(),
        &cfg,
        &secret,
        &[
            "--sub",
            "alice",
            "--fresh",
            "--claim",
            r#"roles=["admin"]"#,
            "--claim",
            "team=blue",
            "--claim",
            "n=a=b",
        ],
    );
    let out = token(dir.path(), &cfg, &secret, &["inspect", &t]);
    out.expect_code(0);
    assert!(out.stdout.contains("verdict: valid"), "{}", out.stdout);
    let header = inspected(&out, "header");
    assert_eq!(header["alg"], "HS256");
    let claims = inspected(&out, "claims");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["type"], "access");
    assert_eq!(claims["fresh"], true);
    assert_eq!(claims["roles"], serde_json::json!(["admin"]), "JSON claim values stay JSON");
    assert_eq!(claims["team"], "blue", "a non-JSON value is a string");
    assert_eq!(claims["n"], "a=b", "only the first = splits");
    for claim in ["exp", "iat", "jti"] {
        assert!(claims.get(claim).is_some(), "{claim} missing: {claims}");
    }
    assert!(claims.get("nbf").is_none(), "no nbf (DESIGN §5)");
    // Cookies are a location in the example: a csrf value, as DESIGN §5 has
    // every minted token carry then, so the token works as a cookie on POST too.
    let csrf = claims["csrf"].as_str().unwrap_or_else(|| panic!("no csrf: {claims}"));
    assert!(uuid::Uuid::parse_str(csrf).is_ok(), "a uuid4: {csrf}");
    // Where cookies are no location, none.
    let headers_only = write(
        dir.path(),
        "headers.toml",
        &config(&format!("secret = \"{secret}\"\nlocations = [\"headers\"]"), CATCH_ALL),
    );
    let t = mint(dir.path(), &headers_only, &secret, &["--sub", "alice"]);
    let claims = inspected(&token(dir.path(), &headers_only, &secret, &["inspect", &t]), "claims");
    assert!(claims.get("csrf").is_none(), "{claims}");
}

#[test]
fn refresh_tokens_have_type_refresh_and_no_fresh() {
    let dir = tempdir();
    let secret = secret48();
    let t = mint(dir.path(), &example(), &secret, &["--sub", "bob", "--type", "refresh"]);
    let out = token(dir.path(), &example(), &secret, &["inspect", &t]);
    out.expect_code(0);
    let claims = inspected(&out, "claims");
    assert_eq!(claims["type"], "refresh");
    assert!(claims.get("fresh").is_none(), "{claims}");
    assert!(out.stdout.contains("refresh token for bob"), "{}", out.stdout);

    let out = token(dir.path(), &example(), &secret, &["mint", "--sub", "bob", "--type", "id"]);
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("--type"), "{}", out.all());

    // Asking for a fresh refresh token is refused, not quietly ignored.
    let out =
        token(dir.path(), &example(), &secret, &["mint", "--sub", "bob", "--type", "refresh", "--fresh"]);
    assert_ne!(out.code, Some(0));
    assert!(out.stdout.trim().is_empty(), "no token printed: {}", out.all());
    assert!(out.stderr.contains("--fresh") && out.stderr.contains("never fresh"), "{}", out.all());
}

#[test]
fn claims_jwtgate_sets_itself_are_refused_not_dropped() {
    let dir = tempdir();
    let secret = secret48();
    // The minter would drop these and print a token without them.
    for (claim, hint) in
        [("exp=99", "reserved"), ("fresh=true", "--fresh"), ("type=refresh", "--type"), ("sub=eve", "--sub")]
    {
        let out = token(dir.path(), &example(), &secret, &["mint", "--sub", "bob", "--claim", claim]);
        assert_ne!(out.code, Some(0), "--claim {claim}: {}", out.all());
        assert!(out.stdout.trim().is_empty(), "no token printed for --claim {claim}: {}", out.all());
        let name = claim.split('=').next().unwrap();
        assert!(
            out.stderr.contains(&format!("--claim {name}=")) && out.stderr.contains(hint),
            "{}",
            out.all()
        );
    }
}

/// A claim needs a name: `=v` and `k` alone are usage errors, no token.
#[test]
fn a_claim_without_a_name_or_value_is_refused() {
    let dir = tempdir();
    let secret = secret48();
    for claim in ["=admin", " =admin", "role"] {
        let out = token(dir.path(), &example(), &secret, &["mint", "--sub", "bob", "--claim", claim]);
        assert_eq!(out.code, Some(1), "--claim {claim:?}: {}", out.all());
        assert!(out.stdout.trim().is_empty(), "no token printed for --claim {claim:?}: {}", out.all());
        assert!(out.stderr.contains("write name=value"), "{}", out.all());
    }
}

#[test]
fn tampered_or_foreign_tokens_inspect_invalid() {
    let dir = tempdir();
    let secret = secret48();
    let t = mint(dir.path(), &example(), &secret, &["--sub", "alice"]);
    let parts: Vec<&str> = t.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = "mallory".into();
    let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2]);
    let out = token(dir.path(), &example(), &secret, &["inspect", &forged]);
    out.expect_code(1);
    assert!(out.stdout.contains("INVALID"), "{}", out.stdout);
    assert!(out.stdout.contains("mallory"), "the claims are still shown for diagnosis:\n{}", out.stdout);

    let out = token(dir.path(), &example(), &secret48(), &["inspect", &t]);
    out.expect_code(1);
    assert!(out.stdout.contains("INVALID"), "another secret: {}", out.stdout);

    let out = token(dir.path(), &example(), &secret, &["inspect", "not-a-token"]);
    out.expect_code(1);
}

// ---------------------------------------------------------------- keygen

fn keygen(dir: &Path, alg: &str, out: Option<&Path>) -> Out {
    let mut cmd = jwtgate(dir);
    cmd.args(["keygen", "--alg", alg]);
    if let Some(out) = out {
        cmd.arg("--out").arg(out);
    }
    output(&mut cmd)
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn es256_keygen_writes_a_key_pair_that_check_mint_and_inspect_accept() {
    let dir = tempdir();
    let keys = dir.path().join("keys");
    keygen(dir.path(), "ES256", Some(&keys)).expect_code(0);
    let (private, public) = (keys.join("signing.pem"), keys.join("signing.pub.pem"));
    let private_pem = std::fs::read_to_string(&private).unwrap();
    assert!(private_pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{private_pem}");
    assert!(std::fs::read_to_string(&public).unwrap().starts_with("-----BEGIN PUBLIC KEY-----"));
    #[cfg(unix)]
    assert_eq!(mode(&private), 0o600, "a private key is readable by its owner only");

    // `private_key` is relative to the config's directory, not the working directory.
    let cfg =
        write(&keys, "gw.toml", &config("algorithm = \"ES256\"\nprivate_key = \"signing.pem\"", CATCH_ALL));
    output(jwtgate(dir.path()).arg("check").arg("-c").arg(&cfg)).expect_code(0);
    let t = mint(dir.path(), &cfg, "", &["--sub", "carol"]);
    let out = token(dir.path(), &cfg, "", &["inspect", &t]);
    out.expect_code(0);
    assert_eq!(inspected(&out, "header")["alg"], "ES256");
    assert!(out.stdout.contains("verdict: valid"), "{}", out.stdout);
}

/// A bare `jwtgate -c FILE` serves (DESIGN §2: what `run` does), and a
/// `jwks` route publishes the signing key's public half, which verifies the
/// tokens `token mint` signs.
#[test]
fn a_bare_jwtgate_serves_and_publishes_its_key_at_the_jwks_route() {
    let dir = tempdir();
    let keys = dir.path().join("keys");
    keygen(dir.path(), "ES256", Some(&keys)).expect_code(0);
    let addr = free_port();
    let routes = format!("{CATCH_ALL}\n[[routes]]\npath = \"/.well-known/jwks.json\"\nhandler = \"jwks\"\n");
    let text = config("algorithm = \"ES256\"\nprivate_key = \"signing.pem\"\nkid = \"k1\"", &routes)
        .replace("127.0.0.1:8080", &addr.to_string());
    let cfg = write(&keys, "gw.toml", &text);
    let _child = Running::serve_as(dir.path(), &[OsStr::new("-c"), cfg.as_os_str()], &[addr]);
    let response = http_get(addr, "/.well-known/jwks.json");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    let jwks: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"));
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str(), key["kid"].as_str()),
        (Some("EC"), Some("P-256"), Some("k1"))
    );
    assert!(key.get("d").is_none(), "never the private part: {key}");
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.clone()).expect("a JWK");
    let t = mint(dir.path(), &cfg, "", &["--sub", "carol"]);
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.validate_aud = false;
    let decoded =
        jsonwebtoken::decode::<Value>(&t, &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(), &validation);
    assert_eq!(decoded.expect("the published key verifies a minted token").claims["sub"], "carol");
    // The handler's route matches GET only (DESIGN §4 rule 6): a POST is the
    // catch-all's, whose policy wants a token.
    let resp = http_request(addr, "POST", "/.well-known/jwks.json", "", "");
    assert!(resp.starts_with("HTTP/1.1 401") && resp.contains("missing_token"), "{resp}");
}

#[test]
fn keygen_never_overwrites_a_key() {
    let dir = tempdir();
    let keys = dir.path().join("keys");
    keygen(dir.path(), "ES256", Some(&keys)).expect_code(0);
    let before = [
        std::fs::read(keys.join("signing.pem")).unwrap(),
        std::fs::read(keys.join("signing.pub.pem")).unwrap(),
    ];
    let out = keygen(dir.path(), "ES256", Some(&keys));
    assert_ne!(out.code, Some(0), "{}", out.all());
    assert!(out.stderr.contains("refusing to overwrite"), "{}", out.all());
    let after = [
        std::fs::read(keys.join("signing.pem")).unwrap(),
        std::fs::read(keys.join("signing.pub.pem")).unwrap(),
    ];
    assert_eq!(before, after, "the key files are unchanged");

    // Only the public half left over: nothing new is written next to it either.
    std::fs::remove_file(keys.join("signing.pem")).unwrap();
    let out = keygen(dir.path(), "ES256", Some(&keys));
    assert_ne!(out.code, Some(0), "{}", out.all());
    assert!(!keys.join("signing.pem").exists(), "no private key that matches no public key");
    assert_eq!(std::fs::read(keys.join("signing.pub.pem")).unwrap(), before[1]);
}

#[test]
fn hs256_keygen_writes_a_secret_file_the_config_can_use() {
    let dir = tempdir();
    keygen(dir.path(), "HS256", Some(dir.path())).expect_code(0);
    let secret_file = dir.path().join("secret.txt");
    #[cfg(unix)]
    assert_eq!(mode(&secret_file), 0o600);
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    assert!(secret.trim().len() >= 32, "HS256 needs ≥ 32 bytes: {secret:?}");

    let sub = dir.path().join("conf");
    std::fs::create_dir(&sub).unwrap();
    std::fs::rename(&secret_file, sub.join("secret.txt")).unwrap();
    let cfg = write(&sub, "gw.toml", &config("secret_file = \"secret.txt\"", CATCH_ALL));
    let out = output(jwtgate(dir.path()).arg("check").arg("-c").arg(&cfg));
    out.expect_code(0);
    assert!(!out.all().contains(secret.trim()), "check never prints the secret");
    let t = mint(dir.path(), &cfg, "", &["--sub", "dave"]);
    token(dir.path(), &cfg, "", &["inspect", &t]).expect_code(0);
}

#[test]
fn keygen_without_out_prints_the_key() {
    let dir = tempdir();
    let out = keygen(dir.path(), "RS256", None);
    out.expect_code(0);
    assert!(out.stdout.contains("-----BEGIN PRIVATE KEY-----"), "{}", out.stdout);
    assert!(out.stdout.contains("-----BEGIN PUBLIC KEY-----"), "{}", out.stdout);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing written");
}

#[test]
fn keygen_refuses_unknown_algorithms() {
    let dir = tempdir();
    let keys = dir.path().join("keys");
    let out = keygen(dir.path(), "none", Some(&keys));
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("--alg") && out.stderr.contains("none"), "{}", out.all());
    assert!(!keys.exists(), "nothing written for a refused algorithm");
}

// ---------------------------------------------------------------- run / demo

/// A spawned server, killed on drop so a failing test leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    /// `jwtgate run -c cfg`, once every address in `addrs` accepts; if it
    /// exits first, panics with what it printed.
    fn serve(dir: &Path, cfg: &Path, addrs: &[SocketAddr]) -> Running {
        Running::serve_as(dir, &[OsStr::new("run"), OsStr::new("-c"), cfg.as_os_str()], addrs)
    }

    /// [`Running::serve`] with the command line `args`.
    fn serve_as(dir: &Path, args: &[&OsStr], addrs: &[SocketAddr]) -> Running {
        let log = dir.join("run.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = jwtgate(dir).args(args).stdout(Stdio::null()).stderr(out).spawn();
        let mut child = Running(child.expect("start jwtgate"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while addrs.iter().any(|a| TcpStream::connect(a).is_err()) {
            if let Some(status) = child.0.try_wait().expect("try_wait") {
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("jwtgate exited ({status}) before listening on {addrs:?}:\n{said}");
            }
            assert!(Instant::now() < deadline, "jwtgate did not listen on {addrs:?} within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// Exit code once it has exited within `limit`, else panic.
    fn wait_for_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "jwtgate did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A raw HTTP/1.1 GET; returns the status line, the headers and the body.
fn http_get(addr: SocketAddr, path: &str) -> String {
    http_request(addr, "GET", path, "Accept: text/html\r\n", "")
}

/// One request on its own connection; `headers` are whole lines.
fn http_request(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    response
}

#[test]
fn run_with_a_bad_config_exits_listing_every_error() {
    let dir = tempdir();
    let text =
        "[server]\nlisten = \"127.0.0.1:0\"\nidle_timeout = \"later\"\n\n[tokens]\nsecret = \"short\"\n\n\
                [[routes]]\npath = \"/x\"\npolicy = \"access\"\nupstream = \"ghost\"\n";
    let cfg = write(dir.path(), "gw.toml", text);
    let mut child = Running(
        jwtgate(dir.path())
            .arg("run")
            .arg("-c")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let code = child.wait_for_exit(Duration::from_secs(10));
    assert_ne!(code, Some(0));
    let mut stderr = String::new();
    child.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    for key in ["server.idle_timeout", "tokens.secret", "routes[0].upstream"] {
        assert!(stderr.contains(&format!("{key}:")), "{key} not reported:\n{stderr}");
    }
    assert!(!stderr.contains("\"short\""), "{stderr}");
}

/// An embedded store that does not open names `store.path` and what to do:
/// its directory missing, or the file held by another gateway.
#[test]
fn run_says_why_the_store_did_not_open_and_what_to_do() {
    let dir = tempdir();
    let secret = secret48();
    let with_store = |path: &Path| {
        config(&format!("secret = \"{secret}\""), CATCH_ALL).replace("127.0.0.1:8080", "127.0.0.1:0").replace(
            "backend = \"memory\"",
            &format!("backend = \"embedded\"\npath = {:?}", path.to_str().unwrap()),
        )
    };
    let missing = dir.path().join("no-such-dir").join("jwtgate.redb");
    let cfg = write(dir.path(), "missing.toml", &with_store(&missing));
    let out = output(jwtgate(dir.path()).arg("run").arg("-c").arg(&cfg));
    out.expect_code(1);
    assert!(
        out.stderr.contains("store.path") && out.stderr.contains("create its directory"),
        "{}",
        out.stderr
    );

    let held = dir.path().join("held.redb");
    let _first = jwtgate::store::EmbeddedStore::open(&held).expect("the first opener gets the file");
    let cfg = write(dir.path(), "held.toml", &with_store(&held));
    let out = output(jwtgate(dir.path()).arg("run").arg("-c").arg(&cfg));
    out.expect_code(1);
    assert!(out.stderr.contains("store.path") && out.stderr.contains("its own store.path"), "{}", out.stderr);
}

#[test]
fn run_with_a_bad_worker_count_says_what_to_set_instead_of_panicking() {
    let dir = tempdir();
    let secret = secret48();
    let cfg = write(dir.path(), "gw.toml", &config(&format!("secret = \"{secret}\""), ""));
    for bad in ["lots", "0"] {
        let out = output(jwtgate(dir.path()).env("TOKIO_WORKER_THREADS", bad).arg("run").arg("-c").arg(&cfg));
        assert_eq!(out.code, Some(1), "{}", out.all());
        assert!(out.stderr.contains("TOKIO_WORKER_THREADS") && out.stderr.contains("unset"), "{}", out.all());
        assert!(!out.all().contains("panicked"), "{}", out.all());
    }
}

/// `listen = ["0.0.0.0:P", "[::]:P"]`, the example's dual-stack pair: the
/// IPv6 wildcard takes IPv6 only (IPV6_V6ONLY), so both bind and both serve.
/// Without it Linux's `[::]` also claims IPv4's port, and the pair that
/// `check` accepts failed at start. `[::]:P` alone keeps the system's
/// default: on Linux (`bindv6only` 0) it serves IPv4 too.
#[test]
fn run_listens_on_both_wildcards_of_a_dual_stack_pair() {
    let v6_loopback = std::net::TcpListener::bind("[::1]:0");
    assert!(v6_loopback.is_ok(), "this test needs IPv6 on the loopback (::1): {v6_loopback:?}");
    drop(v6_loopback);
    let serve = |listen: &str, port: u16| {
        let dir = tempdir();
        let text = config(&format!("secret = \"{}\"", secret48()), CATCH_ALL)
            .replace("listen = \"127.0.0.1:8080\"", &format!("listen = {listen}"));
        let cfg = write(dir.path(), "gw.toml", &text);
        let v4: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
        let child = Running::serve(dir.path(), &cfg, &[v4, v6]);
        for addr in [v4, v6] {
            let response = http_get(addr, "/api/me");
            assert!(response.starts_with("HTTP/1.1 401"), "{listen}, {addr}: no token:\n{response}");
        }
        drop(child);
    };
    let port = free_port().port();
    serve(&format!("[\"0.0.0.0:{port}\", \"[::]:{port}\"]"), port);
    let bindv6only = std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only").unwrap_or_default();
    if bindv6only.trim() == "0" {
        let port = free_port().port();
        serve(&format!("\"[::]:{port}\""), port);
    }
}

#[test]
fn run_serves_until_sigterm_then_exits_0() {
    let dir = tempdir();
    let addr = free_port();
    let text = config(&format!("secret = \"{}\"", secret48()), CATCH_ALL)
        .replace("127.0.0.1:8080", &addr.to_string())
        .replace("watch_config = false", "watch_config = false\nshutdown_grace = \"3s\"");
    let cfg = write(dir.path(), "gw.toml", &text);
    let mut child = Running::serve(dir.path(), &cfg, &[addr]);
    let response = http_get(addr, "/api/me");
    assert!(response.starts_with("HTTP/1.1 401"), "no token on an access route:\n{response}");

    let killed = Command::new("kill").arg("-TERM").arg(child.0.id().to_string()).status().unwrap();
    assert!(killed.success());
    assert_eq!(child.wait_for_exit(Duration::from_secs(3) + Duration::from_millis(500)), Some(0));
    assert!(TcpStream::connect(addr).is_err(), "the listener is closed");
}

#[test]
fn demo_prints_its_url_and_serves_the_home_page() {
    let dir = tempdir();
    let mut child = Running(
        jwtgate(dir.path())
            .args(["demo", "--listen", "127.0.0.1:0", "--access-ttl", "3s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(10)).expect("the demo prints its URL within 10 s");
    assert!(line.contains("3s"), "the access TTL is shown: {line}");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"));
    let addr: SocketAddr =
        url.trim_start_matches("http://").trim_end_matches('/').parse().expect("host:port");
    assert_ne!(addr.port(), 0, "the real port, not the requested :0");

    let response = http_get(addr, "/");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let (head, body) = response.split_once("\r\n\r\n").expect("headers end");
    assert!(head.to_ascii_lowercase().contains("content-type: text/html"), "{head}");
    assert!(body.contains("<html") && body.contains("/login"), "{body}");

    // The seeds' command-line flow, as the README runs it against the demo:
    // a JSON login, its tokens from the cookies, a fresh page, an explicit
    // refresh with the refresh token, and the refreshed token refused there.
    let json = "Content-Type: application/json\r\n";
    let login = http_request(addr, "POST", "/login", json, r#"{"username": "test", "password": "test"}"#);
    assert!(login.starts_with("HTTP/1.1 200"), "{login}");
    let cookie = |name: &str| {
        let prefix = format!("set-cookie: {name}=");
        let line = login.lines().find(|l| l.to_ascii_lowercase().starts_with(&prefix)).expect(name);
        line[prefix.len()..].split(';').next().unwrap().to_owned()
    };
    let (access, refresh) = (cookie("access_token_cookie"), cookie("refresh_token_cookie"));
    let bearer = |token: &str| format!("Authorization: Bearer {token}\r\n");
    let fresh = http_request(addr, "GET", "/account", &bearer(&access), "");
    assert!(fresh.starts_with("HTTP/1.1 200"), "{fresh}");
    let refreshed = http_request(addr, "POST", "/refresh", &bearer(&refresh), "");
    assert!(refreshed.starts_with("HTTP/1.1 200"), "{refreshed}");
    let pair: Value = serde_json::from_str(refreshed.split_once("\r\n\r\n").unwrap().1).unwrap();
    let new_access = pair["access_token"].as_str().expect("an access token");
    let stale = http_request(addr, "GET", "/account", &bearer(new_access), "");
    assert!(stale.starts_with("HTTP/1.1 401") && stale.contains("fresh_token_required"), "{stale}");
    let whoami = http_request(addr, "GET", "/api/whoami", &bearer(new_access), "");
    assert!(whoami.ends_with(r#"{"fresh":"false","sub":"test"}"#), "{whoami}");
    let wrong = http_request(addr, "POST", "/login", json, r#"{"username": "test", "password": "nope"}"#);
    assert!(
        wrong.starts_with("HTTP/1.1 401") && !wrong.to_ascii_lowercase().contains("set-cookie"),
        "{wrong}"
    );
}

/// `--listen` falls back to a free port only when its port is in use: an
/// address that is not this machine's is an error, not a demo on another
/// address than the one asked for.
/// `run` on an address another process holds: exit 1, naming the key and
/// the address (the bind error alone does not say which listener failed).
#[test]
fn run_names_the_listen_address_it_cannot_bind() {
    let dir = tempdir();
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let text = config(&format!("secret = \"{}\"", secret48()), CATCH_ALL)
        .replace("listen = \"127.0.0.1:8080\"", &format!("listen = \"{addr}\""));
    assert!(text.contains(&addr.to_string()), "{text}");
    let cfg = write(dir.path(), "gw.toml", &text);
    let out = output(jwtgate(dir.path()).arg("run").arg("-c").arg(&cfg));
    out.expect_code(1);
    assert!(out.stderr.contains(&format!("server.listen: cannot listen on {addr}")), "{}", out.stderr);
}

#[test]
fn demo_refuses_an_address_it_cannot_listen_on() {
    let dir = tempdir();
    let mut child = Running(
        jwtgate(dir.path())
            .args(["demo", "--listen", "192.0.2.1:8080"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert_eq!(child.wait_for_exit(Duration::from_secs(10)), Some(1));
    let mut stderr = String::new();
    child.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(stderr.contains("192.0.2.1:8080"), "{stderr}");
}
