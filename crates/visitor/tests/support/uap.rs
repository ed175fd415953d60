//! Shared test support: a reader for uap-core's `test_*.yaml` files.

#![allow(dead_code)] // each test binary uses a different subset

pub struct Case {
    pub ua: String,
    pub family: String,
    pub brand: String,
    pub model: String,
}

pub fn uap_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/uap-core")
}

/// Reads a uap-core `test_*.yaml`: a list of flat maps of scalars, which is
/// all these files contain, so a line reader is enough.
pub fn load(file: &str) -> Vec<Case> {
    let path = uap_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut cases: Vec<Case> = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        let (line, new_case) = match line.strip_prefix("- ") {
            Some(rest) => (rest, true),
            None => (line, false),
        };
        let Some((key, value)) = line.split_once(':') else { continue };
        let value = unquote(value.trim());
        if new_case {
            assert_eq!(key, "user_agent_string", "unexpected layout in {file}");
            cases.push(Case { ua: value, family: String::new(), brand: String::new(), model: String::new() });
            continue;
        }
        let Some(case) = cases.last_mut() else { continue };
        match key {
            "family" => case.family = value,
            "brand" => case.brand = value,
            "model" => case.model = value,
            _ => {}
        }
    }
    assert!(cases.len() > 100, "{file}: only {} cases read", cases.len());
    cases
}

pub fn unquote(v: &str) -> String {
    if let Some(inner) = v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        inner.replace("''", "'")
    } else if let Some(inner) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        inner.replace("\\\"", "\"").replace("\\\\", "\\")
    } else {
        v.to_string()
    }
}
