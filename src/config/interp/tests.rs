use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "JWTGATE_SECRET" => Some("s3cret".into()),
        "HOST" => Some("app.internal".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

/// The tree when nothing went wrong, else every problem.
fn interp(text: &str) -> Result<Value, ConfigErrors> {
    match parse_and_interpolate(text, &env)? {
        (v, e) if e.is_empty() => Ok(v),
        (_, e) => Err(e),
    }
}

fn keys_and_messages(errs: &ConfigErrors) -> Vec<(String, String)> {
    errs.iter().map(|e| (e.key.clone(), e.message.clone())).collect()
}

#[test]
fn replaces_present_variables_everywhere() {
    let v = interp(
        r#"
        [tokens]
        secret = "${JWTGATE_SECRET}"
        [[upstreams]]
        urls = ["http://${HOST}:9000", "x${EMPTY}y"]
        [[routes]]
        require = { host = "${HOST}", nested = { deep = ["${JWTGATE_SECRET}"] } }
        "#,
    )
    .unwrap();
    assert_eq!(v["tokens"]["secret"].as_str(), Some("s3cret"));
    assert_eq!(v["upstreams"][0]["urls"][0].as_str(), Some("http://app.internal:9000"));
    assert_eq!(v["upstreams"][0]["urls"][1].as_str(), Some("xy"));
    assert_eq!(v["routes"][0]["require"]["host"].as_str(), Some("app.internal"));
    assert_eq!(v["routes"][0]["require"]["nested"]["deep"][0].as_str(), Some("s3cret"));
}

#[test]
fn missing_variable_names_key_and_says_fix() {
    let errs = interp("[tokens]\nsecret = \"${NOPE}\"\n").unwrap_err();
    assert_eq!(
        keys_and_messages(&errs),
        vec![(
            "tokens.secret".to_string(),
            "environment variable NOPE is not set; export it or write the value".to_string()
        )]
    );
}

#[test]
fn every_missing_variable_is_reported_with_array_and_inline_table_paths() {
    let errs = interp(
        r#"
        [server]
        listen = ["${A}", "ok", "${B}:${C}"]
        [[routes]]
        path = "/"
        [[routes]]
        require = { roles = ["${D}"] }
        "#,
    )
    .unwrap_err();
    let keys: Vec<_> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        ["routes[1].require.roles[0]", "server.listen[0]", "server.listen[2]", "server.listen[2]"]
    );
    assert!(errs.0[2].message.contains(" B "));
    assert!(errs.0[3].message.contains(" C "));
}

#[test]
fn dollar_dollar_brace_is_a_literal_and_lone_dollar_is_kept() {
    let v = interp("a = \"$${HOME} costs $5 $$ ${HOST}\"\n").unwrap();
    assert_eq!(v["a"].as_str(), Some("${HOME} costs $5 $$ app.internal"));
}

#[test]
fn substituted_values_are_not_interpolated_again() {
    let env = |name: &str| (name == "X").then(|| "${Y}".to_string());
    let (v, errs) = parse_and_interpolate("a = \"${X}\"", &env).unwrap();
    assert!(errs.is_empty());
    assert_eq!(v["a"].as_str(), Some("${Y}"));
}

#[test]
fn unterminated_and_invalid_references_are_errors() {
    let errs = interp("a = \"${HOST\"\nb = \"${1X}\"\nc = \"${}\"\n").unwrap_err();
    let got = keys_and_messages(&errs);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].0, "a");
    assert!(got[0].1.starts_with("unterminated"), "{}", got[0].1);
    assert!(got[1].1.contains("not a variable reference"), "{}", got[1].1);
    assert_eq!(got[2].0, "c");
}

#[test]
fn keys_are_not_interpolated() {
    let v = interp("[forward.claims]\n\"${HOST}\" = \"X-A\"\n").unwrap();
    assert!(v["forward"]["claims"].get("${HOST}").is_some());
}

#[test]
fn syntax_error_is_reported_alone_with_position() {
    let errs = interp("[server]\nlisten = \"${NOPE}\"\nbroken = \n").unwrap_err();
    assert_eq!(errs.0.len(), 1);
    assert_eq!(errs.0[0].key, "(syntax)");
    assert!(errs.0[0].message.contains("line 3"), "{}", errs.0[0].message);
}

#[test]
fn duplicate_keys_are_syntax_errors() {
    let errs = interp("[log]\nlevel = \"info\"\nlevel = \"debug\"\n").unwrap_err();
    assert_eq!(errs.0[0].key, "(syntax)");
}

/// The position is given; the line itself, which may hold a secret, never.
#[test]
fn syntax_errors_give_line_and_column_but_never_the_line() {
    let errs = interp("[tokens]\nsecret = \"é-s3cret\"\nsecret = \"ü-n3w\"\n").unwrap_err();
    let message = &errs.0[0].message;
    assert!(message.starts_with("line 3, column 1: duplicate key"), "{message}");
    assert!(!message.contains("s3cret") && !message.contains("n3w"), "{message}");
    let errs = interp("a = \"ü\\q\"\n").unwrap_err();
    assert!(errs.0[0].message.starts_with("line 1, column 9: invalid escape"), "{}", errs.0[0].message);
}
