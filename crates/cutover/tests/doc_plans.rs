//! Every plan the README and the guides show in a `yaml` block (a block with a top-level
//! `strategy:`) must be a valid plan, and every block of `analyses:` alone must be valid
//! analyses, so the YAML in the docs cannot drift from the code either. The Rust snippets are
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

#[test]
fn every_plan_in_the_docs_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![root.join("README.md")];
    markdown_files(&root.join("docs"), &mut files);
    let mut plans = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("a readable markdown file");
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
    assert!(plans >= 8, "found only {plans} plans in the docs");
}
