//! The committed `schema/` and `bindings/generated/` are what the types generate.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use agentwire::codegen::{GENERATED_DIRS, GENERATED_FILES, REGENERATE, generate};

fn files(root: &Path, dir: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.join(dir)];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(name, fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    out
}

#[test]
fn generated_files_are_up_to_date() {
    let fresh = tempfile::tempdir().unwrap();
    generate(fresh.path()).unwrap();
    let mut report = String::new();
    let single = |root: &Path| -> BTreeMap<String, String> {
        GENERATED_FILES
            .iter()
            .filter_map(|name| Some((name.to_string(), fs::read_to_string(root.join(name)).ok()?)))
            .collect()
    };
    let sets = GENERATED_DIRS
        .iter()
        .map(|dir| (files(&common::repo(), dir), files(fresh.path(), dir)))
        .chain([(single(&common::repo()), single(fresh.path()))]);
    for (committed, generated) in sets {
        for (name, new) in &generated {
            match committed.get(name) {
                None => report.push_str(&format!("missing: {name}\n")),
                Some(old) if old != new => {
                    let diff = similar::TextDiff::from_lines(old, new);
                    report.push_str(&format!(
                        "{}",
                        diff.unified_diff()
                            .context_radius(2)
                            .header(&format!("a/{name}"), &format!("b/{name}"))
                    ));
                }
                Some(_) => {}
            }
        }
        for name in committed.keys().filter(|n| !generated.contains_key(*n)) {
            report.push_str(&format!("stale (no longer generated): {name}\n"));
        }
    }
    assert!(
        report.is_empty(),
        "generated files drifted from the Rust types; run `{REGENERATE}` and commit the result.\n{report}"
    );
}

#[test]
fn generation_covers_every_root_and_the_index() {
    let fresh = tempfile::tempdir().unwrap();
    generate(fresh.path()).unwrap();
    for name in [
        "schema/client_message.schema.json",
        "schema/server_message.schema.json",
        "schema/agent_io.schema.json",
        "schema/examples/index.json",
        "schema/asyncapi.json",
        "docs/protocol.md",
        "bindings/generated/index.ts",
        "bindings/generated/ClientMessage.ts",
        "bindings/generated/ServerMessage.ts",
        "bindings/generated/ActionResult.ts",
    ] {
        assert!(fresh.path().join(name).is_file(), "{name} was not generated");
    }
    let index = fs::read_to_string(fresh.path().join("bindings/generated/index.ts")).unwrap();
    for name in [
        "ClientMessage",
        "ServerMessage",
        "ActionResult",
        "ExecutionResponse",
        "ErrorCode",
    ] {
        assert!(
            index.contains(&format!("export type {{ {name} }}")),
            "index.ts does not export {name}"
        );
    }
}
