//! The runtime's modules import only downward: `runtime_imports_follow_the_layers` reads the
//! module paths in `lockmacro-runtime/src` (`crate::x`, `super::x`, and a child module's
//! `x::` inside its parent) and checks every import against the layer table in
//! ARCHITECTURE.md: each module is in exactly one layer, and imports only modules in layers
//! below its own. So the import graph has no cycle, no import runs back up, and the map a
//! reader is given is the code's. (A module declaring its child with `mod x;` is structure, not
//! an import; a child may import its parent, which then must not import it back.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every module of the runtime, by path (`file::slot`), with its source.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read src")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                let mut inner = prefix.to_vec();
                inner.push(stem);
                walk(&path, &inner, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let mut name = prefix.to_vec();
                if stem != "mod" && !(prefix.is_empty() && stem == "lib") {
                    name.push(stem);
                }
                let name = if name.is_empty() {
                    "lib".to_owned()
                } else {
                    name.join("::")
                };
                out.insert(name, std::fs::read_to_string(&path).expect("read module"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&root().join("lockmacro-runtime/src"), &[], &mut out);
    out
}

/// The longest module that `path` (segments from the crate root) names.
fn resolve(path: &[String], modules: &BTreeMap<String, String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| modules.contains_key(m))
}

/// The identifier path that starts at `text` (`a::b::{c, d::e}` gives `[a,b,c]` and
/// `[a,b,d,e]`).
fn paths_at(text: &str) -> Vec<Vec<String>> {
    let mut segments = Vec::new();
    let mut rest = text;
    loop {
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            return group
                .split(',')
                .flat_map(|item| paths_at(item.trim()))
                .map(|tail| segments.iter().cloned().chain(tail).collect())
                .collect();
        }
        let len = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if len == 0 {
            break;
        }
        segments.push(rest[..len].to_owned());
        rest = &rest[len..];
        match rest.strip_prefix("::") {
            Some(after) => rest = after,
            None => break,
        }
    }
    vec![segments]
}

/// The modules `module` imports (never itself).
fn imports(module: &str, source: &str, modules: &BTreeMap<String, String>) -> BTreeSet<String> {
    let own: Vec<String> = if module == "lib" {
        Vec::new()
    } else {
        module.split("::").map(str::to_owned).collect()
    };
    let parent = &own[..own.len().saturating_sub(1)];
    let mut found = BTreeSet::new();
    // Brace depths at which inline modules (`mod imp {`, `mod tests {`) were opened: inside
    // one, `super` is this module itself.
    let mut inline: Vec<i32> = Vec::new();
    let mut depth = 0i32;
    for line in source.lines() {
        let code = match line.trim_start().starts_with("//") {
            true => "",
            false => line.split(" //").next().unwrap_or(""),
        };
        let trimmed = code.trim_start();
        let declares_inline = ["mod ", "pub(crate) mod ", "pub mod "]
            .iter()
            .any(|p| trimmed.starts_with(p) && trimmed.trim_end().ends_with('{'));
        if declares_inline {
            inline.push(depth);
        }
        let mut at = 0;
        while let Some(offset) = code[at..].find("::") {
            let end = at + offset;
            let start = code[..end]
                .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
                .map_or(0, |i| i + 1);
            at = end + 2;
            // Only the first segment of a path: `a::b::c` is seen once, at `a`.
            if start > 0 && code[..start].ends_with("::") {
                continue;
            }
            let first = &code[start..end];
            let base: Vec<String> = match first {
                "crate" => Vec::new(),
                "super" if inline.is_empty() => parent.to_vec(),
                "super" => own.clone(),
                child => {
                    let mut path = own.clone();
                    path.push(child.to_owned());
                    if !modules.contains_key(&path.join("::")) {
                        continue; // not a child module: a type, a crate, `std`...
                    }
                    own.clone()
                }
            };
            let text = if matches!(first, "crate" | "super") {
                &code[at..]
            } else {
                &code[start..]
            };
            for tail in paths_at(text) {
                let mut path = base.clone();
                path.extend(tail);
                if let Some(target) = resolve(&path, modules) {
                    if target != module {
                        found.insert(target);
                    }
                }
            }
        }
        depth += code.matches('{').count() as i32 - code.matches('}').count() as i32;
        while inline.last().is_some_and(|&d| depth <= d) {
            inline.pop();
        }
    }
    found
}

/// ARCHITECTURE.md's layer table: `| N | `a`, `b::c` | what |` rows, layer 1 on top.
fn layers() -> BTreeMap<String, u32> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut layer_of = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(number), Some(names)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        let Ok(layer) = number.parse::<u32>() else {
            continue;
        };
        for name in names.split(',') {
            let name = name.trim().trim_matches('`').to_owned();
            let previous = layer_of.insert(name.clone(), layer);
            assert!(previous.is_none(), "ARCHITECTURE.md lists `{name}` twice");
        }
    }
    layer_of
}

#[test]
fn runtime_imports_follow_the_layers() {
    let modules = modules();
    let layer_of = layers();
    let mut problems = Vec::new();
    let mut graph = String::new();
    for (module, source) in &modules {
        let deps = imports(module, source, &modules);
        graph.push_str(&format!(
            "{module} -> {}\n",
            deps.iter().cloned().collect::<Vec<_>>().join(" ")
        ));
        let Some(&own) = layer_of.get(module) else {
            problems.push(format!("`{module}` is in no layer of ARCHITECTURE.md"));
            continue;
        };
        for dep in deps {
            match layer_of.get(&dep) {
                Some(&theirs) if theirs > own => {}
                Some(&theirs) => problems.push(format!(
                    "`{module}` (layer {own}) imports `{dep}` (layer {theirs}): not below it"
                )),
                None => {} // reported as a module of its own
            }
        }
    }
    for listed in layer_of.keys() {
        if !modules.contains_key(listed) {
            problems.push(format!(
                "ARCHITECTURE.md lists `{listed}`, which is no module"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n\nthe imports as read:\n{graph}",
        problems.join("\n")
    );
}

#[test]
fn the_reader_sees_every_kind_of_import() {
    let modules: BTreeMap<String, String> = ["lib", "a", "a::b", "a::c", "d"]
        .into_iter()
        .map(|m| (m.to_owned(), String::new()))
        .collect();
    let source = "use super::c::X;\nuse crate::{d, a::c};\nuse b::Y;\n// crate::lib\n\
                  mod imp {\n    use super::Z;\n}\n";
    let found: Vec<String> = imports("a::b", source, &modules).into_iter().collect();
    assert_eq!(found, ["a::c", "d"]);
    let found: Vec<String> = imports("a", "use b::Y; use super::d;", &modules)
        .into_iter()
        .collect();
    assert_eq!(found, ["a::b", "d"]);
}
