//! ARCHITECTURE.md's module invariant, checked: every `crate::` path
//! outside comments and test modules is an edge between two modules of
//! `src/`; the graph's cycles must be exactly the known ones.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The code of a module file without its comments and its test module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

fn ident(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The modules a file's code names through `crate::a…` or `crate::{a…, b…}`.
fn names(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(list) = rest.strip_prefix('{') {
            // Top-level names of the braced list only.
            let mut depth = 0;
            let mut start = true;
            for (j, c) in list.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && depth == 0 && !c.is_whitespace() => {
                        out.insert(ident(&list[j..]).to_string());
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest).to_string());
        }
    }
    out
}

/// The strongly connected components of more than one module (Tarjan),
/// each sorted, in sorted order.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'g> {
        g: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(t: &mut T<'g>, v: &'g str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.stack.contains(&w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let at = t.stack.iter().position(|x| *x == v).unwrap();
            let mut comp: Vec<String> = t.stack.drain(at..).map(String::from).collect();
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T { g: graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), out: Vec::new() };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out.sort();
    t.out
}

fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files: BTreeMap<String, String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    files
        .iter()
        // lib.rs is the crate root: it declares every module.
        .filter(|(m, _)| *m != "lib")
        .map(|(m, text)| {
            let edges = names(&code(text)).into_iter().filter(|n| n != m && files.contains_key(n) && n != "lib");
            (m.clone(), edges.collect())
        })
        .collect()
}

/// The cycles that exist today (ARCHITECTURE.md, "the server's modules"):
/// the OpenAPI router ties the handlers to `openapi` and back, and `state`
/// holds `click::Proxies`. A new cycle, or a module joining one, fails
/// (a new handler module joins the first, as `simulations` did; what
/// `state` holds of it lives in a leaf module, `simulation_runs`).
const KNOWN: &[&[&str]] = &[
    &[
        "admin",
        "app",
        "clicks",
        "conversions",
        "dashboard",
        "digests",
        "openapi",
        "outbound",
        "pixel",
        "postback",
        "simulations",
    ],
    &["click", "state"],
];

#[test]
fn the_server_modules_form_no_new_cycle() {
    let g = module_graph();
    assert!(g.len() > 20, "read the modules: {:?}", g.keys());
    assert!(g["app"].contains("click"), "the route table names the click handler: {:?}", g["app"]);
    let known: Vec<Vec<String>> = KNOWN.iter().map(|c| c.iter().map(|m| m.to_string()).collect()).collect();
    assert_eq!(cycles(&g), known, "module cycles (strongly connected components) changed");
}

#[test]
fn the_cycle_check_finds_cycles_and_reads_braced_imports() {
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), names("use crate::{b::X, c};\nfn f() { crate::d::g() }"));
    assert_eq!(g["a"], ["b", "c", "d"].map(String::from).into());
    g.insert("b".to_string(), names("use crate::a::Y;"));
    g.insert("c".to_string(), BTreeSet::new());
    assert_eq!(cycles(&g), vec![vec!["a".to_string(), "b".to_string()]]);
    assert!(names(&code("// see crate::x\nfn f() {}")).is_empty(), "comments name nothing");
}
