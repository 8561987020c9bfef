//! The README's harness examples give the output it shows: every `echo '…' | … analyze` line
//! followed by a `# {…}` line.

use cutover_analysis::harness::run_json;
use serde_json::Value;

#[test]
fn the_readme_harness_examples_print_what_it_shows() {
    let readme = include_str!("../README.md");
    let lines: Vec<&str> = readme.lines().collect();
    let mut checked = 0;
    for pair in lines.windows(2) {
        let (Some(rest), Some(shown)) =
            (pair[0].strip_prefix("echo '"), pair[1].strip_prefix("# "))
        else {
            continue;
        };
        let Some((request, _)) = rest.split_once("' |") else {
            continue;
        };
        let have: Value = serde_json::from_str(&run_json(request).unwrap()).unwrap();
        let want: Value = serde_json::from_str(shown).unwrap();
        assert_eq!(have, want, "{request}");
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} examples found");
}
