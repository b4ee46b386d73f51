//! core's and the filter's modules form no import cycle: each `crate::<module>` that a module's
//! non-test source names (code, not comments) is an edge between top-level modules, and the graph
//! must be acyclic, so every module can be read, tested and replaced on top of the ones it uses.
//!
//! Test code (`tests.rs` and `*_tests.rs` files, everything after a file's `#[cfg(test)]`) is left
//! out: a test may build a whole `Config`, or drive the root context, without making the module it
//! exercises depend on it.
//!
//! One known exception, in the filter: `plugin::Plugin` holds every feature's per-worker state
//! (`CacheShared`, `LimitsShared`, …) and the features take `&Plugin` to read the configuration and
//! each other's state. Its outgoing edges are set aside until the features take only what they
//! use; every other cycle, and any module importing the root context, fails the test.

// Test harness: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module → the top-level modules its non-test files name as `crate::<module>`.
fn module_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph = Graph::new();
    for path in files {
        let relative = path.strip_prefix(src).unwrap();
        let first = relative.components().next().unwrap();
        let module = Path::new(first.as_os_str())
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let test_file = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with("tests.rs"));
        if module == "lib" || test_file {
            continue;
        }
        let edges = graph.entry(module.clone()).or_default();
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            if line.trim_start().starts_with("#[cfg(test)]") {
                break;
            }
            let mut rest = line.split("//").next().unwrap_or("");
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                // `crate::{…}` and `crate::SomeItem` name the crate root, not a module.
                if !name.is_empty() && name != module {
                    edges.insert(name);
                }
            }
        }
    }
    graph
}

/// One cycle in `graph`, as the modules along it, if there is any.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

fn crate_graph(crate_dir: &str) -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(crate_dir)
        .join("src");
    module_graph(&src)
}

/// `graph` has the `expected` modules and no cycle once the edges out of `aggregates` are dropped.
fn assert_acyclic(crate_dir: &str, mut graph: Graph, expected: &[&str], aggregates: &[&str]) {
    for module in aggregates {
        graph.insert(module.to_string(), BTreeSet::new());
    }
    for module in expected {
        assert!(
            graph.contains_key(*module),
            "{crate_dir}: no module {module}"
        );
    }
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle between {crate_dir} modules: {} (move the shared piece into a leaf module)",
            cycle.join(" → ")
        );
    }
}

#[test]
fn core_modules_have_no_import_cycle() {
    let graph = crate_graph("core");
    assert_acyclic(
        "core",
        graph,
        &["config", "access", "cache", "limits", "answer"],
        &[],
    );
}

#[test]
fn gateway_modules_have_no_import_cycle() {
    let graph = crate_graph("gateway");
    assert_acyclic(
        "gateway",
        graph,
        &[
            "run",
            "config_file",
            "render",
            "console",
            "migrate",
            "ratelimit",
        ],
        &[],
    );
}

#[test]
fn filter_modules_have_no_import_cycle() {
    let graph = crate_graph("filter");
    let importers: Vec<&String> = graph
        .iter()
        .filter(|(_, edges)| edges.contains("root"))
        .map(|(module, _)| module)
        .collect();
    assert!(
        importers.is_empty(),
        "filter modules importing the root context: {importers:?}"
    );
    assert_acyclic(
        "filter",
        graph,
        &["root", "plugin", "http", "access", "limiter", "cache"],
        &["plugin"],
    );
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let mut graph = Graph::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("c".into());
    graph.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    graph.get_mut("c").unwrap().clear();
    assert_eq!(find_cycle(&graph), None);
}

#[test]
fn the_graph_reads_nested_files_and_skips_test_code() {
    let dir = std::env::temp_dir().join(format!("module-graph-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("a")).unwrap();
    std::fs::write(dir.join("a.rs"), "mod inner;\n").unwrap();
    std::fs::write(dir.join("a/inner.rs"), "use crate::b::X; // crate::c\n").unwrap();
    std::fs::write(dir.join("a/tests.rs"), "use crate::d;\n").unwrap();
    std::fs::write(
        dir.join("b.rs"),
        "pub struct X;\n#[cfg(test)]\nmod tests { use crate::a; }\n",
    )
    .unwrap();
    let graph = module_graph(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(graph["a"], BTreeSet::from(["b".to_string()]));
    assert!(graph["b"].is_empty());
}
