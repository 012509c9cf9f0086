//! The source tree's shape: within `src/pipeline/` and `src/store/`, modules import each other in
//! one direction only (the README's Architecture section draws the flow).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each module of `dir` (by file name) and the sibling modules it imports through `super::`,
/// its tests left out (there `super::` is the module itself).
fn imports(dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|name| name != "mod")
        .collect();
    modules
        .iter()
        .map(|module| {
            let text = std::fs::read_to_string(dir.join(format!("{module}.rs"))).unwrap();
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
            let used = code
                .match_indices("super::")
                .map(|(at, _)| {
                    let rest = &code[at + "super::".len()..];
                    let end = rest
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    rest[..end].to_string()
                })
                .filter(|name| modules.contains(name) && name != module)
                .collect();
            (module.clone(), used)
        })
        .collect()
}

/// A cycle of imports, if there is one (depth-first search).
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
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
        for next in &graph[node] {
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
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_pipeline_and_the_store_have_no_import_cycle() {
    for dir in ["src/pipeline", "src/store"] {
        let graph = imports(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir));
        assert!(graph.len() > 5, "{dir}: {graph:?}");
        assert_eq!(cycle(&graph), None, "{dir} imports in a cycle");
    }
}

#[test]
fn a_cycle_is_found_when_there_is_one() {
    let graph: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(from, to)| (from.to_string(), BTreeSet::from([to.to_string()])))
        .collect();
    assert_eq!(
        cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
