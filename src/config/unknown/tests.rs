use super::*;

/// The config when every key was known and well typed, else every problem.
fn load(text: &str) -> Result<RawConfig, ConfigErrors> {
    match deserialize(Value::Table(toml::from_str(text).unwrap()))? {
        (raw, errs, _) if errs.is_empty() => Ok(raw),
        (_, errs, _) => Err(errs),
    }
}

fn pairs(errs: &ConfigErrors) -> Vec<(&str, &str)> {
    errs.iter().map(|e| (e.key.as_str(), e.message.as_str())).collect()
}

#[test]
fn known_keys_deserialize_with_defaults() {
    let raw = load("[server]\nlisten = [\"127.0.0.1:1\"]\n[[routes]]\npath = \"/\"\npolicy = \"public\"\n")
        .unwrap();
    assert_eq!(raw.server.listen.to_vec(), ["127.0.0.1:1"]);
    assert_eq!(raw.server.max_headers, 100);
    assert_eq!(raw.routes[0].policy.as_deref(), Some("public"));
    assert!(raw.admin.is_none());
}

#[test]
fn unknown_top_level_key_suggests_the_section() {
    let errs = load("[sesions]\nimplicit_refresh = false\n").unwrap_err();
    assert_eq!(pairs(&errs), [("sesions", "unknown key; did you mean \"sessions\"?")]);
}

#[test]
fn unknown_nested_key() {
    let errs = load("[server]\nlisen = \"0.0.0.0:1\"\n").unwrap_err();
    assert_eq!(pairs(&errs), [("server.lisen", "unknown key; did you mean \"listen\"?")]);
}

#[test]
fn unknown_key_in_routes_entry_and_accept_entry() {
    let errs = load(
        "[[routes]]\npath = \"/\"\n[[routes]]\npath = \"/a\"\npolcy = \"access\"\n\
         [[tokens.accept]]\nkidd = \"k\"\n",
    )
    .unwrap_err();
    assert_eq!(
        pairs(&errs),
        [
            ("routes[1].polcy", "unknown key; did you mean \"policy\"?"),
            ("tokens.accept[0].kidd", "unknown key; did you mean \"kid\"?"),
        ]
    );
}

#[test]
fn every_unknown_key_is_reported() {
    let errs = load("bogus = 1\n[log]\nfmt = \"json\"\nzzzzzzzz = 2\n[admin]\nlistn = \"x\"\n").unwrap_err();
    let keys: Vec<_> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    for k in ["bogus", "log.fmt", "log.zzzzzzzz", "admin.listn"] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    let far = errs.iter().find(|e| e.key == "log.zzzzzzzz").unwrap();
    assert!(far.message.starts_with("unknown key; remove it"), "{}", far.message);
}

#[test]
fn free_form_maps_have_no_unknown_keys() {
    let raw = load(
        "[forward.claims]\nroles = \"X-Auth-Roles\"\n[[routes]]\npath = \"/\"\nrequire = { anything = { x = 1 } }\n",
    )
    .unwrap();
    assert_eq!(raw.forward.claims["roles"], "X-Auth-Roles");
}

#[test]
fn type_error_names_its_key() {
    let errs = load("[server]\nmax_headers = \"100\"\n").unwrap_err();
    let got = pairs(&errs);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "server.max_headers");
    assert!(got[0].1.contains("expected usize"), "{}", got[0].1);
}

#[test]
fn type_errors_inside_arrays_name_the_entry() {
    let errs = load(
        "[server]\nlisten = [\"a\", 5]\n[[routes]]\npath = \"/\"\n[[routes]]\nmax_age = 10\n\
         [forward.claims]\nsub = 1\n",
    )
    .unwrap_err();
    let keys: Vec<_> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["forward.claims.sub", "routes[1].max_age", "server.listen[1]"]);
}

#[test]
fn type_error_on_a_table_and_unknown_keys_are_reported_together() {
    let errs = load("admin = 5\n[[routes]]\npath = 3\n[[routes]]\npolcy = \"x\"\n").unwrap_err();
    let got = pairs(&errs);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0].0, "admin");
    assert!(got[0].1.contains("expected a table"), "{}", got[0].1);
    assert_eq!(got[1].0, "routes[0].path");
    assert_eq!(got[2].0, "routes[1].polcy");
}

#[test]
fn a_scalar_where_a_list_is_expected() {
    let errs = load("[tokens]\nlocations = \"headers\"\n").unwrap_err();
    assert_eq!(errs.0[0].key, "tokens.locations");
    assert!(errs.0[0].message.contains("expected a sequence"), "{}", errs.0[0].message);
}

#[test]
fn listen_wrong_type_is_explained() {
    let errs = load("[server]\nlisten = 8080\n").unwrap_err();
    assert_eq!(errs.0[0].key, "server.listen");
    assert!(errs.0[0].message.contains("string or an array of strings"), "{}", errs.0[0].message);
}

#[test]
fn known_keys_follow_the_raw_structs() {
    assert!(known_keys("routes").contains(&"strip_prefix"));
    assert!(known_keys("tokens.accept").contains(&"public_key"));
    assert!(known_keys("").contains(&"upstreams"));
    assert_eq!(suggest("polcy", known_keys("routes")), Some("policy"));
    assert_eq!(suggest("max-age", known_keys("routes")), Some("max_age"));
    assert_eq!(suggest("xyz", known_keys("routes")), None);
}
