//! Checking exposition text with Prometheus's own linter.

use std::io::Write as _;
use std::process::{Command, ExitStatus, Stdio};

/// Runs `promtool check metrics` on `text` (Prometheus text or OpenMetrics) and returns its
/// exit status and everything it printed. `promtool` must be on the `PATH` (`scripts/test-deps`
/// installs it); its exit code is 0 when clean, 3 when the text parsed with lint problems and 1
/// when it did not parse.
///
/// # Panics
/// When `promtool` cannot be started or fed: a test that calls this needs it.
pub fn promtool_check_metrics(text: &[u8]) -> (ExitStatus, String) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/test-deps)");
    promtool
        .stdin
        .take()
        .expect("promtool's stdin is piped")
        .write_all(text)
        .expect("promtool reads its input");
    let out = promtool.wait_with_output().expect("promtool ran");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, said)
}

#[cfg(test)]
mod tests {
    use super::promtool_check_metrics;

    #[test]
    #[ignore = "needs promtool: scripts/test-deps"]
    fn tells_clean_text_from_broken_text() {
        let (status, said) =
            promtool_check_metrics(b"# HELP up Whether up.\n# TYPE up gauge\nup 1\n");
        assert!(status.success(), "{said}");
        let (status, said) = promtool_check_metrics(b"up{job=\"x\" 1\n");
        assert_eq!(status.code(), Some(1), "a parse error: {said}");
        assert!(!said.is_empty());
    }
}
