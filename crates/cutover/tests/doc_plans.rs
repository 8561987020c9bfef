//! Every plan the README and the guides show must be valid: a `yaml` block with a top-level
//! `strategy:`, a `yaml` block of `analyses:` alone, and the raw string of every
//! `Plan::from_yaml(r"...")` in a Rust snippet (which a `no_run` doctest compiles but never
//! parses). So the YAML in the docs cannot drift from the code either. The Rust snippets are
//! doctests of this crate (module `guides`).

use std::path::{Path, PathBuf};

fn markdown_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            markdown_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
}

/// The `yaml` blocks of a markdown text, with the line each starts on.
fn yaml_blocks(text: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        match (&mut current, line.trim_start()) {
            (None, "```yaml") => current = Some((n + 1, String::new())),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some((_, block)), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// The string literals (raw or plain, without escapes) passed to `Plan::from_yaml` in a
/// markdown text, with their line and whether the snippet expects the plan to be refused
/// (`.unwrap_err()` right after the call).
fn rust_plans(text: &str) -> Vec<(usize, String, bool)> {
    let mut plans = Vec::new();
    for open in ["Plan::from_yaml(r\"", "Plan::from_yaml(\""] {
        let mut rest = text;
        while let Some(start) = rest.find(open) {
            let body = &rest[start + open.len()..];
            let Some(end) = body.find('"') else { break };
            let at = text.len() - rest.len() + start;
            let refused = body[end..].starts_with("\").unwrap_err()");
            plans.push((
                text[..at].lines().count() + 1,
                body[..end].to_owned(),
                refused,
            ));
            rest = &body[end..];
        }
    }
    plans
}

#[test]
fn every_plan_in_the_docs_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![root.join("README.md")];
    markdown_files(&root.join("docs"), &mut files);
    let mut plans = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("a readable markdown file");
        for (line, plan, refused) in rust_plans(&text) {
            plans += 1;
            match (cutover::Plan::from_yaml(&plan), refused) {
                (Err(e), false) => {
                    panic!("{}:{line}: the plan does not parse: {e}", file.display());
                }
                (Ok(_), true) => {
                    panic!(
                        "{}:{line}: the snippet expects this plan to be refused",
                        file.display()
                    );
                }
                _ => {}
            }
        }
        for (line, block) in yaml_blocks(&text) {
            let top_level = |key: &str| block.lines().any(|l| l.starts_with(key));
            let plan = if top_level("strategy:") {
                block
            } else if top_level("analyses:") {
                // Analyses alone: under a canary that needs none of them.
                format!("strategy: {{ canary: {{ steps: [ {{set_weight: 10}} ] }} }}\n{block}")
            } else {
                continue; // a fragment of something else
            };
            plans += 1;
            if let Err(e) = cutover::Plan::from_yaml(&plan) {
                panic!("{}:{line}: the plan does not parse: {e}", file.display());
            }
        }
    }
    assert!(plans >= 15, "found only {plans} plans in the docs");
}
