//! Free disk space.

use std::path::PathBuf;

use async_trait::async_trait;
use cutover_core::checklist::{Check, CheckContext, CheckResult};
use serde::Deserialize;

/// The file system holding `path` has at least `min_free_mb` MiB and/or `min_free_percent`
/// percent free (available to unprivileged users).
///
/// ```yaml
/// disk: { path: /var/lib/app, min_free_mb: 2048, min_free_percent: 10 }
/// ```
#[derive(Debug, Clone)]
pub struct DiskCheck {
    path: PathBuf,
    min_free_mb: Option<u64>,
    min_free_percent: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiskParams {
    path: PathBuf,
    #[serde(default)]
    min_free_mb: Option<u64>,
    #[serde(default)]
    min_free_percent: Option<f64>,
}

impl DiskCheck {
    /// Checks the file system of `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DiskCheck {
            path: path.into(),
            min_free_mb: None,
            min_free_percent: None,
        }
    }

    /// At least this many MiB free.
    pub fn min_free_mb(mut self, mb: u64) -> Self {
        self.min_free_mb = Some(mb);
        self
    }

    /// At least this percentage free.
    pub fn min_free_percent(mut self, percent: f64) -> Self {
        self.min_free_percent = Some(percent);
        self
    }

    pub(crate) fn from_params(p: DiskParams) -> Result<Self, (String, String)> {
        if p.min_free_mb.is_none() && p.min_free_percent.is_none() {
            return Err((
                String::new(),
                "give `min_free_mb`, `min_free_percent` or both".into(),
            ));
        }
        if let Some(pct) = p.min_free_percent
            && !(0.0..=100.0).contains(&pct)
        {
            return Err((
                "min_free_percent".into(),
                format!("{pct} is not between 0 and 100"),
            ));
        }
        Ok(DiskCheck {
            path: p.path,
            min_free_mb: p.min_free_mb,
            min_free_percent: p.min_free_percent,
        })
    }
}

/// Free and total bytes of the file system holding `path`.
fn space(path: &std::path::Path) -> std::io::Result<(u64, u64)> {
    let stat = rustix::fs::statvfs(path)?;
    Ok((
        stat.f_bavail.saturating_mul(stat.f_frsize),
        stat.f_blocks.saturating_mul(stat.f_frsize),
    ))
}

#[async_trait]
impl Check for DiskCheck {
    async fn run(&self, _ctx: &CheckContext) -> CheckResult {
        let shown = self.path.display().to_string();
        let (free, total) = match space(&self.path) {
            Ok(s) => s,
            Err(e) => {
                return CheckResult::error(format!("cannot read the free space of {shown}: {e}"))
                    .hint("check that the path exists and is readable")
                    .evidence("path", &shown);
            }
        };
        let free_mb = free / (1024 * 1024);
        #[allow(clippy::cast_precision_loss)] // a percentage for people
        let percent = if total == 0 {
            0.0
        } else {
            free as f64 * 100.0 / total as f64
        };
        let percent = (percent * 10.0).round() / 10.0;
        let mut short = Vec::new();
        if let Some(min) = self.min_free_mb
            && free_mb < min
        {
            short.push(format!("{free_mb} MiB free, {min} MiB needed"));
        }
        if let Some(min) = self.min_free_percent
            && percent < min
        {
            short.push(format!("{percent}% free, {min}% needed"));
        }
        let result = if short.is_empty() {
            CheckResult::pass(format!("{shown}: {free_mb} MiB ({percent}%) free"))
        } else {
            CheckResult::fail(format!("{shown}: {}", short.join("; "))).hint(
                "free space (old logs, images, artifacts) or grow the volume before deploying",
            )
        };
        result
            .evidence("path", &shown)
            .evidence("free_mb", free_mb)
            .evidence("free_percent", percent)
            .evidence("total_mb", total / (1024 * 1024))
    }
}
