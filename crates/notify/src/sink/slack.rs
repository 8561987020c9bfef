//! A Slack incoming webhook (or anything that takes its payload: Mattermost, Rocket.Chat).

use std::fmt::Write as _;
use std::time::Duration;

use async_trait::async_trait;
use cutover_core::Timestamp;
use serde_json::{Value, json};

use super::{DeliveryError, Poster, Sink, encode};
use crate::notice::{Notice, NoticeKind, Severity};
use crate::secret::ConfigError;

/// Slack caps a section's text at 3000 characters.
const MAX_TEXT: usize = 3000;

/// Posts each notice to a Slack incoming webhook as Block Kit blocks: a headline, the rollout,
/// step, candidate weight and reason, and a button to the dashboard or report when the
/// [`Notifier`](crate::Notifier) knows a link. `text` carries the same headline for
/// notifications that show no blocks.
///
/// The URL is the credential: it never shows in `Debug`, logs or errors.
#[derive(Debug, Clone)]
pub struct Slack {
    poster: Poster,
}

impl Slack {
    /// A sink posting to the incoming-webhook `url` (`https://hooks.slack.com/services/...`).
    pub fn new(url: &str) -> Result<Self, ConfigError> {
        Ok(Slack {
            poster: Poster::new(url, "Slack URL")?,
        })
    }

    /// How long one attempt may take (10 s by default).
    pub fn timeout(mut self, timeout: Duration) -> Result<Self, ConfigError> {
        self.poster = self.poster.with_timeout(timeout)?;
        Ok(self)
    }
}

#[async_trait]
impl Sink for Slack {
    fn kind(&self) -> &'static str {
        "slack"
    }

    async fn deliver(&self, notice: &Notice, _now: Timestamp) -> Result<(), DeliveryError> {
        let body = encode(&payload(notice))?;
        self.poster.post("application/json", &[], body).await
    }
}

/// The Block Kit payload for a notice.
pub(crate) fn payload(notice: &Notice) -> Value {
    let icon = match (notice.severity, notice.kind) {
        (_, NoticeKind::Promoted) => ":white_check_mark:",
        (Severity::Critical, _) => ":rotating_light:",
        (Severity::Warning, _) => ":warning:",
        (Severity::Info, _) => ":information_source:",
    };
    let headline = format!(
        "{icon} *{}* {}",
        escape(&notice.rollout.service),
        escape(&notice.kind_text())
    );
    let mut fields = vec![
        field(
            "Rollout",
            &format!("`{}`", escape(notice.rollout.id.as_str())),
        ),
        field(
            "Strategy",
            &format!(
                "{} → `{}`",
                escape(&notice.rollout.strategy),
                escape(notice.rollout.revisions.candidate.as_str())
            ),
        ),
    ];
    if let Some(step) = &notice.step {
        fields.push(field(
            "Step",
            &format!("{} ({})", step.index + 1, escape(&step.kind)),
        ));
    }
    if let Some(percent) = notice.candidate_percent() {
        fields.push(field("Candidate weight", &format!("{percent} %")));
    }
    if let Some(environment) = &notice.rollout.environment {
        fields.push(field("Environment", &escape(environment)));
    }
    if let Some(by) = &notice.by {
        fields.push(field("By", &escape(by)));
    }
    let mut detail = escape(&notice.summary);
    if let Some(reason) = &notice.reason {
        let _ = write!(detail, "\n*Reason:* {}", escape(reason));
    }
    let mut blocks = vec![
        section(&headline),
        json!({ "type": "section", "fields": fields }),
        section(&detail),
        json!({
            "type": "context",
            "elements": [{
                "type": "mrkdwn",
                "text": format!("{} · {} · `{}`", notice.at, notice.severity, escape(&notice.id)),
            }],
        }),
    ];
    if let Some(link) = &notice.link {
        blocks.push(json!({
            "type": "actions",
            "elements": [{
                "type": "button",
                "text": { "type": "plain_text", "text": "Open rollout" },
                "url": link,
            }],
        }));
    }
    json!({
        "text": truncate(&format!("{} {}", notice.headline(), notice.summary)),
        "blocks": blocks,
    })
}

fn section(text: &str) -> Value {
    json!({ "type": "section", "text": { "type": "mrkdwn", "text": truncate(text) } })
}

fn field(name: &str, value: &str) -> Value {
    json!({ "type": "mrkdwn", "text": truncate(&format!("*{name}*\n{value}")) })
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn truncate(text: &str) -> String {
    if text.chars().count() <= MAX_TEXT {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(MAX_TEXT - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_characters_and_truncates() {
        assert_eq!(escape("a<b>&c"), "a&lt;b&gt;&amp;c");
        let long = "x".repeat(5000);
        assert_eq!(truncate(&long).chars().count(), MAX_TEXT);
    }
}
