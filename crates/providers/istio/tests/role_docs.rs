//! The Role printed in docs/providers/istio.md is the one the cluster tests grant (read from the
//! crate docs), so the guide cannot drift from what is tested.

use cutover_kube::testing::role_from_docs;

#[test]
fn the_guide_prints_the_tested_role() {
    assert_eq!(
        role_from_docs(&as_doc_comment(include_str!(
            "../../../../docs/providers/istio.md"
        ))),
        role_from_docs(include_str!("../src/lib.rs")),
    );
}

/// Markdown as `//!` lines: `role_from_docs` reads doc comments, whose indentation starts after
/// the `//! `.
fn as_doc_comment(markdown: &str) -> String {
    let mut out = String::new();
    for line in markdown.lines() {
        out.push_str("//! ");
        out.push_str(line);
        out.push('\n');
    }
    out
}
