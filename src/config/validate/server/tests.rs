use std::time::Duration;

use super::*;

fn keys(errs: &ConfigErrors) -> Vec<&str> {
    errs.iter().map(|e| e.key.as_str()).collect()
}

fn check(raw: &RawServer) -> (Option<ServerSettings>, ConfigErrors) {
    let mut errs = ConfigErrors::default();
    let s = server(raw, Path::new("/nonexistent-base"), &mut errs);
    (s, errs)
}

#[test]
fn defaults_are_valid() {
    let (s, errs) = check(&RawServer::default());
    assert!(errs.is_empty(), "{errs}");
    let s = s.unwrap();
    assert_eq!(s.listen, ["0.0.0.0:8080".parse().unwrap()]);
    assert!(s.tls.is_none());
    assert_eq!(s.header_read_timeout, Duration::from_secs(10));
    assert_eq!(s.idle_timeout, Duration::from_secs(75));
    assert_eq!(s.shutdown_grace, Duration::from_secs(30));
    assert_eq!((s.max_header_bytes, s.max_headers, s.max_connections), (65536, 100, 10000));
}

#[test]
fn listen_string_error_is_keyed_without_index() {
    let raw = RawServer { listen: OneOrMany::One("localhost:80".into()), ..RawServer::default() };
    let (s, errs) = check(&raw);
    assert!(s.is_none());
    assert_eq!(keys(&errs), ["server.listen"]);
    assert!(errs.0[0].message.contains("write e.g. \"0.0.0.0:8080\""));
}

#[test]
fn listen_array_errors_are_indexed() {
    let listen = OneOrMany::Many(vec!["[::]:80".into(), "nope".into(), "[::]:80".into(), "1.2.3.4".into()]);
    let (_, errs) = check(&RawServer { listen, ..RawServer::default() });
    assert_eq!(keys(&errs), ["server.listen[1]", "server.listen[2]", "server.listen[3]"]);
    assert!(errs.0[1].message.contains("twice"));
}

/// A wildcard address takes its port on every address of its family, so it
/// cannot be bound beside another address on that port (nor can the admin
/// listener share it). Other ports, the other family and port 0 are fine.
#[test]
fn a_wildcard_listen_address_overlaps_any_other_on_its_port() {
    let listen = |v: &[&str]| OneOrMany::Many(v.iter().map(|s| s.to_string()).collect());
    let raw = RawServer { listen: listen(&["0.0.0.0:8080", "127.0.0.1:8080"]), ..RawServer::default() };
    let (_, errs) = check(&raw);
    assert_eq!(keys(&errs), ["server.listen[1]"]);
    assert!(errs.0[0].message.contains("overlaps 0.0.0.0:8080"), "{}", errs.0[0].message);
    let raw = RawServer { listen: listen(&["[::1]:8080", "[::]:8080"]), ..RawServer::default() };
    assert_eq!(keys(&check(&raw).1), ["server.listen[1]"]);
    for fine in [
        &["0.0.0.0:8080", "127.0.0.1:8081"][..],
        &["127.0.0.1:8080", "10.0.0.1:8080"],
        &["0.0.0.0:8080", "[::1]:8080"],
        &["0.0.0.0:0", "127.0.0.1:0"],
    ] {
        let (s, errs) = check(&RawServer { listen: listen(fine), ..RawServer::default() });
        assert!(s.is_some() && errs.is_empty(), "{fine:?}: {errs}");
    }

    let mut errs = ConfigErrors::default();
    let a = admin(&RawAdmin { listen: "127.0.0.1:8080".into() }, &mut errs).unwrap();
    let raw = RawServer { listen: OneOrMany::One("0.0.0.0:8080".into()), ..RawServer::default() };
    let s = server(&raw, Path::new("."), &mut errs).unwrap();
    admin_apart_from_server(&a, &s, &mut errs);
    assert_eq!(keys(&errs), ["admin.listen"]);
    assert!(errs.0[0].message.contains("own port"), "{}", errs.0[0].message);
}

#[test]
fn empty_listen_is_an_error() {
    let (_, errs) = check(&RawServer { listen: OneOrMany::Many(vec![]), ..RawServer::default() });
    assert_eq!(keys(&errs), ["server.listen"]);
}

#[test]
fn tls_needs_both_files() {
    let (_, errs) = check(&RawServer { tls_cert: Some("c.pem".into()), ..RawServer::default() });
    assert_eq!(keys(&errs), ["server.tls_key"]);
    let (_, errs) = check(&RawServer { tls_key: Some("k.pem".into()), ..RawServer::default() });
    assert_eq!(keys(&errs), ["server.tls_cert"]);
    let empty =
        RawServer { tls_cert: Some(String::new()), tls_key: Some(" ".into()), ..RawServer::default() };
    let (s, errs) = check(&empty);
    assert!(errs.is_empty() && s.unwrap().tls.is_none());
}

#[test]
fn tls_files_resolve_relative_to_base_and_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), "x").unwrap();
    let raw = RawServer {
        tls_cert: Some("cert.pem".into()),
        tls_key: Some("missing.pem".into()),
        ..RawServer::default()
    };
    let mut errs = ConfigErrors::default();
    assert!(server(&raw, dir.path(), &mut errs).is_none());
    assert_eq!(keys(&errs), ["server.tls_key"]);
    assert!(errs.0[0].message.contains("missing.pem does not exist"));
    // Real PEM now: the certificate and key are loaded at config load.
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), pair.cert.pem()).unwrap();
    std::fs::write(dir.path().join("missing.pem"), pair.signing_key.serialize_pem()).unwrap();
    let mut errs = ConfigErrors::default();
    let tls = server(&raw, dir.path(), &mut errs).unwrap().tls.unwrap();
    assert_eq!(tls.cert, dir.path().join("cert.pem"));
    assert_eq!(tls.key, dir.path().join("missing.pem"));
    // A key file that holds no private key (here, the certificate again) is
    // tls_key's error, not tls_cert's.
    std::fs::write(dir.path().join("missing.pem"), pair.cert.pem()).unwrap();
    let mut errs = ConfigErrors::default();
    assert!(server(&raw, dir.path(), &mut errs).is_none());
    assert_eq!(keys(&errs), ["server.tls_key"]);
    // A file that is there but holds no certificate is an error too.
    std::fs::write(dir.path().join("cert.pem"), "x").unwrap();
    let mut errs = ConfigErrors::default();
    assert!(server(&raw, dir.path(), &mut errs).is_none());
    assert_eq!(keys(&errs), ["server.tls_cert"]);
}

#[test]
fn trusted_proxies_accept_cidrs_and_bare_addresses() {
    let raw = RawServer {
        trusted_proxies: vec!["10.0.0.0/8".into(), "192.168.1.10".into(), "::1".into(), "10.1.2.3/16".into()],
        ..RawServer::default()
    };
    let (s, errs) = check(&raw);
    assert!(errs.is_empty(), "{errs}");
    let nets: Vec<String> = s.unwrap().trusted_proxies.iter().map(|n| n.to_string()).collect();
    assert_eq!(nets, ["10.0.0.0/8", "192.168.1.10/32", "::1/128", "10.1.0.0/16"]);
}

#[test]
fn bad_trusted_proxy_is_indexed() {
    let raw = RawServer {
        trusted_proxies: vec!["10.0.0.0/8".into(), "10.0.0.0/33".into()],
        ..RawServer::default()
    };
    let (_, errs) = check(&raw);
    assert_eq!(keys(&errs), ["server.trusted_proxies[1]"]);
}

#[test]
fn durations_and_counts_are_checked() {
    let raw = RawServer {
        header_read_timeout: "0s".into(),
        idle_timeout: "soon".into(),
        shutdown_grace: "0s".into(),
        max_header_bytes: 0,
        max_headers: 0,
        max_connections: 0,
        ..RawServer::default()
    };
    let (_, errs) = check(&raw);
    assert_eq!(
        keys(&errs),
        [
            "server.header_read_timeout",
            "server.idle_timeout",
            "server.max_header_bytes",
            "server.max_headers",
            "server.max_connections"
        ]
    );
    assert!(errs.0[1].message.contains("write e.g."));
}

/// Past these a limit stops being one: hyper's header slots per request, the
/// connection semaphore and the shutdown drain break on them (panics, or
/// gigabytes per request), so `check` refuses what `run` could not serve.
#[test]
fn counts_have_upper_bounds() {
    let at = RawServer {
        max_header_bytes: 8 << 20,
        max_headers: 1_000,
        max_connections: 1 << 20,
        ..RawServer::default()
    };
    let (settings, errs) = check(&at);
    assert!(errs.0.is_empty() && settings.is_some(), "{errs:?}");
    let past = RawServer {
        max_header_bytes: (8 << 20) + 1,
        max_headers: 1_001,
        max_connections: 3_000_000_000_000_000_000,
        ..RawServer::default()
    };
    let (settings, errs) = check(&past);
    assert!(settings.is_none());
    assert_eq!(keys(&errs), ["server.max_header_bytes", "server.max_headers", "server.max_connections"]);
    assert!(errs.0[2].message.contains("at most 1048576"), "{}", errs.0[2].message);
}

#[test]
fn admin_listen_is_an_address_apart_from_the_server() {
    let mut errs = ConfigErrors::default();
    let a = admin(&RawAdmin::default(), &mut errs).unwrap();
    assert_eq!(a.listen, "127.0.0.1:9901".parse().unwrap());
    assert!(admin(&RawAdmin { listen: "9901".into() }, &mut errs).is_none());
    assert_eq!(keys(&errs), ["admin.listen"]);

    let mut errs = ConfigErrors::default();
    let raw = RawServer { listen: OneOrMany::One("127.0.0.1:9901".into()), ..RawServer::default() };
    let s = server(&raw, Path::new("."), &mut errs).unwrap();
    admin_apart_from_server(&a, &s, &mut errs);
    assert_eq!(keys(&errs), ["admin.listen"]);
}

#[test]
fn log_format_and_level() {
    let mut errs = ConfigErrors::default();
    let l = log(&RawLog::default(), &mut errs).unwrap();
    assert_eq!((l.format, l.level.as_str(), l.access_log), (LogFormat::Pretty, "info", true));
    let json = RawLog { format: "JSON".into(), level: "info,jwtgate=debug".into(), access_log: false };
    assert_eq!(log(&json, &mut errs).unwrap().format, LogFormat::Json);
    assert!(errs.is_empty());

    let bad = RawLog { format: "xml".into(), level: "jwtgate=loud".into(), access_log: true };
    assert!(log(&bad, &mut errs).is_none());
    assert_eq!(keys(&errs), ["log.format", "log.level"]);
    assert!(errs.0[0].message.contains("\"pretty\", \"json\""));
    let empty = RawLog { level: String::new(), ..RawLog::default() };
    assert!(log(&empty, &mut errs).is_none());
}
