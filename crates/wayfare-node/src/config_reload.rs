//! What `SIGHUP` does: the daemon reads its config file again and says which keys changed.
//! Every key is read once, at start (sessions, keys, listeners and the exit are built from
//! them), so nothing is applied live: the log names the changed keys and the restart that
//! applies them, and the daemon runs on with the config it started with.

use std::path::Path;

use crate::config::NodeConfig;

/// The `[section] key` names whose values differ between `old` and `new` (top-level keys
/// without a section), sorted by section and key.
pub fn changed_keys(old: &NodeConfig, new: &NodeConfig) -> Vec<String> {
    let (Ok(a), Ok(b)) = (serde_json::to_value(old), serde_json::to_value(new)) else {
        return vec!["(the whole file)".into()];
    };
    let mut out = Vec::new();
    diff(None, &a, &b, &mut out);
    out
}

fn diff(
    section: Option<&str>,
    a: &serde_json::Value,
    b: &serde_json::Value,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    let empty = serde_json::Map::new();
    let (am, bm) = match (a, b) {
        (Value::Object(am), Value::Object(bm)) => (am, bm),
        (Value::Object(am), Value::Null) => (am, &empty),
        (Value::Null, Value::Object(bm)) => (&empty, bm),
        _ => {
            if a != b {
                out.push(section.map_or_else(|| "(the whole file)".into(), |s| format!("[{s}]")));
            }
            return;
        }
    };
    let mut keys: Vec<&String> = am
        .keys()
        .chain(bm.keys().filter(|k| !am.contains_key(*k)))
        .collect();
    keys.sort();
    for k in keys {
        let (x, y) = (
            am.get(k).unwrap_or(&Value::Null),
            bm.get(k).unwrap_or(&Value::Null),
        );
        if x == y {
            continue;
        }
        match section {
            // A section: its keys one by one.
            None if x.is_object() || y.is_object() => diff(Some(k), x, y, out),
            None => out.push(k.clone()),
            Some(s) => out.push(format!("[{s}] {k}")),
        }
    }
}

/// The log line for a `SIGHUP`: the file re-read with `load` against the running `current`.
pub fn on_sighup(
    path: &Path,
    current: &NodeConfig,
    load: impl FnOnce() -> Result<NodeConfig, String>,
) -> String {
    match load() {
        Err(e) => format!(
            "SIGHUP: {} does not load ({e}); the daemon runs on with the config it started with — fix the file before the next start",
            path.display()
        ),
        Ok(new) => {
            let keys = changed_keys(current, &new);
            if keys.is_empty() {
                format!("SIGHUP: {} is unchanged", path.display())
            } else {
                format!(
                    "SIGHUP: {} changes {}; every key is read at start, so restart the daemon to apply them (`systemctl restart wayfare`: paused channels survive it); it runs on with the config it started with",
                    path.display(),
                    keys.join(", ")
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[api]\nlisten = \"127.0.0.1:7767\"\n[chain]\nrpc_url = \"http://127.0.0.1:8545\"\nmarket = \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\n[buyer]\nkeystore = \"b.json\"\n";

    fn cfg(extra_buyer: &str) -> NodeConfig {
        NodeConfig::parse(&format!("{BASE}{extra_buyer}")).unwrap()
    }

    #[test]
    fn names_each_changed_key_with_its_section() {
        let a = cfg("");
        assert!(changed_keys(&a, &a.clone()).is_empty());
        let b = cfg("deposit = \"123\"\n");
        assert_eq!(changed_keys(&a, &b), vec!["[buyer] deposit"]);
        let mut c = b.clone();
        c.data_dir = "/elsewhere".into();
        assert_eq!(changed_keys(&a, &c), vec!["[buyer] deposit", "data_dir"]);
    }

    #[test]
    fn a_file_that_does_not_load_keeps_the_running_config() {
        let a = cfg("");
        let line = on_sighup(Path::new("/etc/wayfare/wayfare.toml"), &a, || {
            Err("expected `=`".into())
        });
        assert!(line.contains("does not load (expected `=`)"), "{line}");
        assert!(line.contains("runs on"), "{line}");
        let same = on_sighup(Path::new("w.toml"), &a, || Ok(a.clone()));
        assert_eq!(same, "SIGHUP: w.toml is unchanged");
    }
}
