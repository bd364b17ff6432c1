//! The runtime's shape as docs/architecture.md states it: the crates' top-level modules import one
//! another in one direction only (a cycle found here names the modules and the files that close
//! it), and nothing under `src/` names a built-in analysis, its outputs or its settings.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use fleetflow_dataflows::analyses::REGISTRY;

/// Edges between top-level modules, each with the files that make it.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// The code of a file without its tests and comment lines (doc links are not imports).
fn code_of(text: &str) -> String {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The top-level modules a piece of code names: `crate::m::..` and each head of `use crate::{m, n::..}`.
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut head) = (0, String::new());
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident(head.trim()));
                        head.clear();
                    }
                    _ if depth == 0 => head.push(c),
                    _ => {}
                }
            }
            out.insert(ident(head.trim()));
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty() && m != "self");
    out
}

/// The graph of the crate whose sources are under `root`.
fn graph_of(root: &Path) -> Graph {
    let mut graph = Graph::new();
    for path in sources_under(root) {
        let relative = path.strip_prefix(root).expect("below root").to_path_buf();
        let first = relative.components().next().expect("a component").as_os_str().to_string_lossy().to_string();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&path).expect("a source file"));
        for to in named_modules(&code).into_iter().filter(|m| *m != module) {
            graph.entry(module.clone()).or_default().entry(to).or_default().insert(relative.display().to_string());
        }
    }
    graph
}

/// A cycle of `graph` as the modules along it, if there is one.
fn cycle_of(graph: &Graph) -> Option<Vec<String>> {
    fn visit(m: &str, graph: &Graph, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            return Some(path[at..].iter().cloned().chain([m.to_string()]).collect());
        }
        if !done.insert(m.to_string()) {
            return None;
        }
        path.push(m.to_string());
        for to in graph.get(m).into_iter().flat_map(|t| t.keys()) {
            if let Some(cycle) = visit(to, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|m| visit(m, graph, &mut Vec::new(), &mut done))
}

/// The cycle with the files that make each of its edges.
fn explain(graph: &Graph, cycle: &[String]) -> String {
    let edge = |w: &[String]| format!("{} -> {} ({:?})", w[0], w[1], graph[&w[0]][&w[1]]);
    cycle.windows(2).map(edge).collect::<Vec<_>>().join("; ")
}

fn crate_root(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Checks the crate under `root` has no import cycle; `(from, to)` is an edge it must have (the
/// graph was read).
fn assert_one_way(root: &str, (from, to): (&str, &str)) {
    let graph = graph_of(&crate_root(root));
    assert!(graph.get(from).is_some_and(|t| t.contains_key(to)), "the graph is read: {graph:?}");
    if let Some(cycle) = cycle_of(&graph) {
        panic!("{root}/ has an import cycle: {}", explain(&graph, &cycle));
    }
}

#[test]
fn the_runtime_modules_import_each_other_one_way() {
    assert_one_way("src", ("job", "sources"));
}

/// What docs/architecture.md's table says a folder may not import (those above it may not import
/// those below; the sources and the sinks, beside each other, not each other).
const MUST_NOT_IMPORT: &[(&str, &[&str])] = &[
    ("stored_files", &["operations", "sources", "sinks", "checkpoints", "config", "route", "job", "commands", "cli"]),
    ("operations", &["sources", "sinks", "checkpoints", "config", "route", "job", "commands", "cli"]),
    ("sources", &["sinks", "checkpoints", "config", "route", "job", "commands", "cli"]),
    ("sinks", &["sources", "checkpoints", "config", "route", "job", "commands", "cli"]),
    ("checkpoints", &["sinks", "config", "route", "job", "commands", "cli"]),
    ("config", &["route", "job", "commands", "cli"]),
    ("route", &["sources", "checkpoints", "config", "job", "commands", "cli"]),
    ("job", &["commands", "cli"]),
];

#[test]
fn the_runtime_folders_import_only_what_the_architecture_page_allows() {
    let graph = graph_of(&crate_root("src"));
    let mut found = Vec::new();
    for (from, forbidden) in MUST_NOT_IMPORT {
        assert!(graph.contains_key(*from), "{from} is a module of src/: {graph:?}");
        for to in forbidden.iter().filter(|to| graph[*from].contains_key(**to)) {
            found.push(format!("{from} -> {to} ({:?})", graph[*from][*to]));
        }
    }
    assert!(found.is_empty(), "imports docs/architecture.md does not allow: {}", found.join("; "));
}

#[test]
fn the_dataflow_modules_import_each_other_one_way() {
    assert_one_way("dataflows/src", ("analyses", "analysis"));
}

#[test]
fn a_cycle_is_found_and_doc_links_and_tests_are_not_imports() {
    let code = "use crate::{a::X, b::{c, d}};\nuse crate::e;\n/// [`crate::doc`]\nfn f() { crate::g::h(); }\n#[cfg(test)]\nuse crate::t;";
    let named: Vec<_> = named_modules(&code_of(code)).into_iter().collect();
    assert_eq!(named, ["a", "b", "e", "g"]);
    let mut graph = Graph::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        graph.entry(from.into()).or_default().entry(to.into()).or_default().insert(format!("{from}.rs"));
    }
    assert_eq!(cycle_of(&graph), Some(vec!["a".to_string(), "b".into(), "c".into(), "a".into()]));
    graph.get_mut("c").map(|t| t.remove("a"));
    assert_eq!(cycle_of(&graph), None);
}

/// Every `.rs` file under `root`.
fn sources_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for path in std::fs::read_dir(&dir).expect("a source folder").flatten().map(|e| e.path()) {
            match path.is_dir() {
                true => stack.push(path),
                false if path.extension().is_some_and(|e| e == "rs") => out.push(path),
                false => {}
            }
        }
    }
    out
}

#[test]
fn the_runtime_names_no_analysis_output_or_setting_of_the_registry() {
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for spec in REGISTRY.iter().map(|a| a.spec()) {
        names.insert(spec.name);
        names.extend(spec.outputs.iter().map(|o| o.name));
        names.extend(spec.settings.iter().map(|s| s.name));
        names.extend(spec.queries.iter().map(|q| q.name));
    }
    assert!(names.contains("daily_speeders") && names.contains("threshold_mph"), "{names:?}");
    // `/api/status` holds the recent records of every output timed as a detection under "alerts".
    let allowed = ["\"alerts\": alerts(live),"];
    let mut found = Vec::new();
    for path in sources_under(&crate_root("src")) {
        let code = code_of(&std::fs::read_to_string(&path).expect("a source file"));
        for line in code.lines().filter(|l| !allowed.contains(&l.trim())) {
            found.extend(
                names.iter().filter(|n| line.contains(&format!("\"{n}\""))).map(|n| format!("{}: {n}: {}", path.display(), line.trim())),
            );
        }
    }
    assert!(found.is_empty(), "the runtime names what analyses declare:\n{}", found.join("\n"));
}
