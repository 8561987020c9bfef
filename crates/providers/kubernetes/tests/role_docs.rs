//! The Role printed in docs/providers/kubernetes.md is the one the cluster tests grant (read
//! from the crate docs), so the guide cannot drift from what is tested.

use cutover_kube::testing::{role_from_docs, role_from_markdown};

#[test]
fn the_guide_prints_the_tested_role() {
    assert_eq!(
        role_from_markdown(include_str!("../../../../docs/providers/kubernetes.md")),
        role_from_docs(include_str!("../src/lib.rs")),
    );
}
