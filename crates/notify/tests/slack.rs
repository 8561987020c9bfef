//! The Slack payload against Block Kit's rules, and the Slack URL kept out of logs, `Debug`
//! and stored documents. Alone in its test binary so that capturing this thread's logs sees
//! every line the notifier writes.

mod support;

use cutover_core::StateStore;
use cutover_notify::{Filter, NoticeKind, Notifier, Release, Slack};
use support::*;

#[tokio::test(flavor = "current_thread")]
async fn slack_blocks_follow_block_kit_and_the_url_stays_secret() {
    let logs = support_logs::capture();
    let store = memory();
    run_rollout(store.clone(), "checkout-v42", FAILING).await;
    Release::new("checkout")
        .environment("production")
        .save(store.as_ref(), &"checkout-v42".parse().unwrap())
        .await
        .unwrap();
    let receiver = Receiver::start().await;
    receiver.script([Reply::Status(500)]);
    let secret_path = "/services/T0000/B0000/SECRETTOKEN";
    let slack = Slack::new(&receiver.url(secret_path)).unwrap();
    let notifier = Notifier::new(store.clone())
        .sink(
            "ops",
            slack.clone(),
            Filter::default().kinds([NoticeKind::RolledBack]),
        )
        .unwrap()
        .retry(fast_retry(2))
        .link_base("https://cutover.example.com/");
    let report = notifier.deliver_pending().await.unwrap();
    assert_eq!(report.delivered["ops"], 1);
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[1].path, secret_path);
    let payload = received[1].json();
    // Block Kit: `text` is the fallback; each block has a known type and mrkdwn texts of at
    // most 3000 characters; a section has at most 10 fields.
    assert!(
        payload["text"]
            .as_str()
            .unwrap()
            .starts_with("checkout: rolled back")
    );
    let blocks = payload["blocks"].as_array().unwrap();
    for block in blocks {
        match block["type"].as_str().unwrap() {
            "section" => {
                if let Some(text) = block.get("text") {
                    assert_eq!(text["type"], "mrkdwn");
                    assert!(text["text"].as_str().unwrap().chars().count() <= 3000);
                }
                if let Some(fields) = block.get("fields") {
                    let fields = fields.as_array().unwrap();
                    assert!(!fields.is_empty() && fields.len() <= 10);
                    assert!(fields.iter().all(|f| f["type"] == "mrkdwn"));
                }
            }
            "context" => assert!(!block["elements"].as_array().unwrap().is_empty()),
            "actions" => {
                let button = &block["elements"][0];
                assert_eq!(button["type"], "button");
                assert_eq!(button["text"]["type"], "plain_text");
                assert_eq!(
                    button["url"],
                    "https://cutover.example.com/rollouts/checkout-v42"
                );
            }
            other => panic!("unexpected block type {other}"),
        }
    }
    let all = payload.to_string();
    assert!(all.contains("*checkout* rolled back"), "{all}");
    assert!(
        all.contains("Environment") && all.contains("production"),
        "{all}"
    );
    assert!(all.contains("Reason") && all.contains("checks"), "{all}");
    // The secret is in no log line, no Debug and no stored document.
    let logs = logs.text();
    assert!(
        logs.contains("retrying"),
        "the failed attempt was logged: {logs}"
    );
    assert!(!logs.contains("SECRETTOKEN"), "{logs}");
    assert!(!format!("{slack:?} {notifier:?}").contains("SECRETTOKEN"));
    let bad = Slack::new("htp:/hooks.slack.com/services/SECRETTOKEN").unwrap_err();
    assert!(
        !bad.to_string().contains("SECRETTOKEN") && !format!("{bad:?}").contains("SECRETTOKEN")
    );
    let cursor = store
        .load_document(cutover_notify::CURSOR_KIND, &"ops".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(!cursor.body.to_string().contains("SECRETTOKEN"));
}

mod support_logs {
    use std::io::Write;
    use std::sync::Arc;

    use parking_lot::Mutex;

    #[derive(Clone, Default)]
    pub(crate) struct Logs(Arc<Mutex<Vec<u8>>>);

    impl Logs {
        pub(crate) fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock()).into_owned()
        }
    }

    impl Write for Logs {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    pub(crate) struct Capture {
        logs: Logs,
        _guard: tracing::subscriber::DefaultGuard,
    }

    impl Capture {
        pub(crate) fn text(&self) -> String {
            self.logs.text()
        }
    }

    /// Captures every log line of this thread, at every level.
    pub(crate) fn capture() -> Capture {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        Capture {
            logs,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }
}
