//! Which notices a sink receives.

use std::collections::BTreeSet;

use crate::notice::{Notice, NoticeKind, Severity};

/// Which notices a sink receives: by kind, by service and by least severity. Everything by
/// default.
///
/// ```
/// use cutover_notify::{Filter, NoticeKind, Severity};
/// let on_call = Filter::default()
///     .kinds([NoticeKind::RollingBack, NoticeKind::RolledBack, NoticeKind::Failed])
///     .services(["checkout", "payments"])
///     .min_severity(Severity::Warning);
/// assert!(!on_call.admits_kind(NoticeKind::Promoted));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    kinds: BTreeSet<NoticeKind>,
    services: BTreeSet<String>,
    min_severity: Option<Severity>,
}

impl Filter {
    /// Only these kinds (all when never called).
    pub fn kinds(mut self, kinds: impl IntoIterator<Item = NoticeKind>) -> Self {
        self.kinds.extend(kinds);
        self
    }

    /// Only rollouts of these services (all when never called).
    pub fn services(mut self, services: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.services.extend(services.into_iter().map(Into::into));
        self
    }

    /// Only notices at least this severe.
    pub fn min_severity(mut self, severity: Severity) -> Self {
        self.min_severity = Some(severity);
        self
    }

    /// Whether a notice of this kind may pass.
    pub fn admits_kind(&self, kind: NoticeKind) -> bool {
        self.kinds.is_empty() || self.kinds.contains(&kind)
    }

    /// Whether the notice passes.
    pub fn admits(&self, notice: &Notice) -> bool {
        self.admits_kind(notice.kind)
            && (self.services.is_empty() || self.services.contains(&notice.rollout.service))
            && self.min_severity.is_none_or(|min| notice.severity >= min)
    }
}
