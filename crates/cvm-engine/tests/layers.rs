//! The decision core's modules are layers a reader can climb from the
//! bottom: a module uses only modules on lower layers, never one on its own
//! layer or above, so there is no import cycle. This test reads the sources
//! (test code excluded) and names every reference that breaks the order; a
//! new module must be given a layer here.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

/// Bottom first.
const LAYERS: &[&[&str]] = &[
    &["error", "ids", "holdout", "telemetry", "time"],
    &["events", "budget"],
    &["validation"],
    &["profile"],
    &["features", "policy"],
    &["timers", "offers"],
    &["score"],
    &["models"],
    &["stats"],
    &["state"],
    &["catalog"],
    &["attribution"],
    &["engine"],
    &["driver"],
    &["memory"],
];

/// The module of the crate that `path` (relative to `src/`) belongs to.
fn module_of(path: &str) -> String {
    path.trim_end_matches(".rs").split('/').next().unwrap_or_default().to_owned()
}

/// Source without comments and `#[cfg(test)]` items (they sit at the end
/// of each file): doc links are not dependencies.
fn production_code(text: &str) -> String {
    let code = text.find("#[cfg(test)]").map_or(text, |i| &text[..i]);
    code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// Top-level modules named by `crate::…` paths, including every branch of
/// `crate::{a, b::{…}}` trees; `names` resolves the crate root's re-exports.
fn referenced_modules(code: &str, names: &BTreeMap<String, String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let firsts: Vec<String> = if let Some(tree) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = true;
            let mut items = Vec::new();
            for (j, c) in tree.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphanumeric() || c == '_') => {
                        let word: String = tree[j..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                        items.push(word);
                        item_start = false;
                    }
                    _ => {}
                }
            }
            items
        } else {
            vec![rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()]
        };
        for first in firsts {
            out.insert(names.get(&first).cloned().unwrap_or(first));
        }
    }
    out
}

#[test]
fn modules_only_use_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = fs::read_to_string(src.join("lib.rs")).unwrap();
    // `pub use module::{A, B};` at the root: `crate::A` is `module`.
    let mut names = BTreeMap::new();
    for line in lib.lines().filter_map(|l| l.strip_prefix("pub use ")) {
        let (module, items) = line.split_once("::").unwrap();
        for item in items.trim_matches(|c| "{};".contains(c)).split(',') {
            names.insert(item.trim().to_owned(), module.to_owned());
        }
    }
    let layer_of: BTreeMap<&str, usize> =
        LAYERS.iter().enumerate().flat_map(|(i, mods)| mods.iter().map(move |m| (*m, i))).collect();
    let mut files = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut problems = Vec::new();
    for path in files {
        let rel = path.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
        if rel == "lib.rs" {
            continue;
        }
        let module = module_of(&rel);
        let Some(&own) = layer_of.get(module.as_str()) else {
            problems.push(format!("{rel}: module `{module}` has no layer in tests/layers.rs"));
            continue;
        };
        let code = fs::read_to_string(&path).unwrap();
        for used in referenced_modules(&production_code(&code), &names) {
            if used == module {
                continue;
            }
            match layer_of.get(used.as_str()) {
                Some(&layer) if layer < own => {}
                Some(&layer) => problems.push(format!(
                    "{rel}: `{module}` (layer {own}) uses `{used}` (layer {layer}); move the shared part down"
                )),
                None => problems.push(format!("{rel}: uses `crate::{used}`, which is not a module with a layer")),
            }
        }
    }
    assert!(problems.is_empty(), "layering broken:\n{}", problems.join("\n"));
}

#[test]
fn the_reference_reader_sees_trees_and_re_exports() {
    let names = BTreeMap::from([("StateTxn".to_owned(), "state".to_owned())]);
    let code = "use crate::{events::{Event, EventKind}, profile, StateTxn};\nfn f() { crate::ids::x(); }";
    let found: Vec<String> = referenced_modules(code, &names).into_iter().collect();
    assert_eq!(found, ["events", "ids", "profile", "state"]);
}
