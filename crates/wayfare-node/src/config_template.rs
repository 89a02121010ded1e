//! The config reference (`config-reference.toml`: every key the daemon parses, at its default,
//! with a comment) and the per-role copies `wayfare init` writes from it. Tests below hold the
//! reference to [`NodeConfig`]: a key the struct gains or loses, or a default that changes,
//! fails them until the reference says so.

/// The commented reference config.
pub const REFERENCE: &str = include_str!("../config-reference.toml");

/// A TOML string literal.
pub fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML array of strings.
pub fn toml_strings(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| toml_string(s)).collect();
    format!("[{}]", inner.join(", "))
}

/// One line of the reference: `Some((key, commented))` for a key line.
fn key_of(line: &str) -> Option<(&str, bool)> {
    let (commented, rest) = match line.strip_prefix('#') {
        Some(r) => (true, r),
        None => (false, line),
    };
    let (key, _) = rest.split_once(" = ")?;
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    ok.then_some((key, commented))
}

fn section_of(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('[')?;
    Some(&rest[..rest.find(']')?])
}

/// The reference with only the `sections` named (`"api"`, `"chain"`, `"p2p"`, `"seller"`,
/// `"buyer"`; top-level keys always stay) and each `(section, key, toml value)` of `set` put in
/// (uncommenting the key if it was unset). `""` is the top level. A key the reference lacks is
/// an error.
pub fn render(
    header: &str,
    sections: &[&str],
    set: &[(&str, &str, String)],
) -> Result<String, String> {
    let mut out = String::from(header);
    let mut used = vec![false; set.len()];
    let mut current = "";
    let mut keep = true;
    for line in REFERENCE.lines() {
        if let Some(s) = section_of(line) {
            current = s;
            keep = sections.contains(&s);
        }
        if !keep {
            continue;
        }
        let Some((key, _)) = key_of(line) else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        match set.iter().position(|(s, k, _)| *s == current && *k == key) {
            Some(i) => {
                used[i] = true;
                let comment = line
                    .find(" # ")
                    .map(|at| line[at..].trim_start())
                    .map(|c| format!("  {c}"))
                    .unwrap_or_default();
                out.push_str(&format!("{key} = {}{comment}\n", set[i].2));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if let Some(i) = used.iter().position(|u| !u) {
        return Err(format!(
            "the config reference has no key [{}] {}",
            set[i].0, set[i].1
        ));
    }
    Ok(out)
}

/// Every key of the reference with its section, and whether it is unset (`#key`) there.
pub fn reference_keys() -> Vec<(String, String, bool)> {
    let mut current = String::new();
    let mut keys = Vec::new();
    for line in REFERENCE.lines() {
        if let Some(s) = section_of(line) {
            current = s.to_string();
        } else if let Some((k, commented)) = key_of(line) {
            keys.push((current.clone(), k.to_string(), commented));
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::NodeConfig;

    /// The reference with every unset key set: all of the daemon's keys.
    fn everything() -> String {
        REFERENCE
            .lines()
            .map(|l| match key_of(l) {
                Some((_, true)) => &l[1..],
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `section.key` paths of a JSON object (one level of sections).
    fn paths(v: &serde_json::Value) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (k, v) in v.as_object().unwrap() {
            match v.as_object() {
                Some(o) => out.extend(o.keys().map(|s| format!("{k}.{s}"))),
                None => {
                    out.insert(k.clone());
                }
            }
        }
        out
    }

    #[test]
    fn the_reference_lists_every_key_the_daemon_parses() {
        // deny_unknown_fields: every key of the reference is one the daemon parses.
        let cfg = NodeConfig::parse(&everything()).expect("the reference parses as a config");
        // Serialized (None as null), the config has every field: the reference must name each.
        let all = paths(&serde_json::to_value(&cfg).unwrap());
        let listed: BTreeSet<String> = reference_keys()
            .into_iter()
            .map(|(s, k, _)| if s.is_empty() { k } else { format!("{s}.{k}") })
            .collect();
        let missing: Vec<_> = all.difference(&listed).collect();
        assert!(
            missing.is_empty(),
            "config-reference.toml lacks {missing:?}"
        );
        let extra: Vec<_> = listed.difference(&all).collect();
        assert!(
            extra.is_empty(),
            "config-reference.toml lists unknown {extra:?}"
        );
    }

    /// Keys without a default: the reference shows an example.
    const REQUIRED: &[&str] = &[
        "chain.rpc_url",
        "chain.market",
        "seller.account_keystore",
        "seller.signer_keystore",
        "seller.public_host",
        "seller.price_per_mib",
        "seller.price_per_second",
        "buyer.keystore",
    ];

    #[test]
    fn the_reference_states_the_defaults_the_code_uses() {
        let minimal = r#"
            [chain]
            rpc_url = "x"
            market = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
            [seller]
            account_keystore = "a"
            signer_keystore = "s"
            public_host = "h"
            price_per_mib = "1"
            price_per_second = "1"
            [buyer]
            keystore = "b"
        "#;
        let defaults = serde_json::to_value(NodeConfig::parse(minimal).unwrap()).unwrap();
        let reference = serde_json::to_value(NodeConfig::parse(&everything()).unwrap()).unwrap();
        for (section, key, unset) in reference_keys() {
            let path = if section.is_empty() {
                key.clone()
            } else {
                format!("{section}.{key}")
            };
            let pick = |v: &serde_json::Value| {
                if section.is_empty() {
                    v[&key].clone()
                } else {
                    v[&section][&key].clone()
                }
            };
            if REQUIRED.contains(&path.as_str()) || path == "data_dir" || path == "p2p.advertise" {
                // data_dir's default depends on who runs it; advertise's on the role.
                continue;
            }
            if unset {
                assert!(
                    pick(&defaults).is_null(),
                    "{path} is `#{key}` (unset) but defaults to {}",
                    pick(&defaults)
                );
            } else {
                assert_eq!(
                    pick(&reference),
                    pick(&defaults),
                    "the reference's {path} is not the default"
                );
            }
        }
    }

    #[test]
    fn a_rendered_role_config_parses_validates_and_keeps_the_comments() {
        let text = render(
            "# test\n",
            &["api", "chain", "p2p", "buyer"],
            &[
                ("chain", "rpc_url", toml_string("http://127.0.0.1:9")),
                ("chain", "chain_id", "4242".into()),
                ("buyer", "keystore", toml_string("/k/buyer.json")),
            ],
        )
        .unwrap();
        assert!(!text.contains("[seller]"), "{text}");
        assert!(text.contains("chain_id = 4242  # refuse"), "{text}");
        let cfg = NodeConfig::parse(&text).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.chain.chain_id, Some(4242));
        assert_eq!(
            cfg.buyer.unwrap().keystore,
            std::path::Path::new("/k/buyer.json")
        );
        let e = render("", &["chain"], &[("chain", "colour", "1".into())]).unwrap_err();
        assert!(e.contains("colour"), "{e}");
    }
}
