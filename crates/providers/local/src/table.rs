//! The routing table: which revision a request goes to. Immutable once built; the proxy swaps
//! a whole new table in atomically on every change, and a request keeps the table it started
//! with.

use std::net::SocketAddr;
use std::sync::Arc;

use cutover_core::{HeaderRoute, Mirror, RevisionId, RouteMatch, StringMatch, TrafficSplit};
use http::HeaderMap;
use http::header::COOKIE;
use http::uri::Authority;

use crate::metrics::RevisionStats;

/// One revision's upstream and its index in the metrics.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    pub(crate) revision: RevisionId,
    pub(crate) addr: SocketAddr,
    pub(crate) authority: Authority,
    /// Where its requests are counted.
    pub(crate) stats: Arc<RevisionStats>,
}

/// A named rule (a header route or a mirror) and the upstream it sends to.
#[derive(Debug, Clone)]
pub(crate) struct Targeted<T> {
    pub(crate) rule: T,
    pub(crate) upstream: usize,
}

/// Rules that routers find by name.
pub(crate) trait Named {
    fn name(&self) -> &str;
}

impl Named for HeaderRoute {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for Mirror {
    fn name(&self) -> &str {
        &self.name
    }
}

/// Replaces the rule called like `entry`'s (or adds it), keeping the order of the others.
pub(crate) fn upsert<T: Named>(rules: &mut Vec<Targeted<T>>, entry: Targeted<T>) {
    remove(rules, entry.rule.name());
    rules.push(entry);
}

/// Removes the rule called `name`, if there is one.
pub(crate) fn remove<T: Named>(rules: &mut Vec<Targeted<T>>, name: &str) {
    rules.retain(|r| r.rule.name() != name);
}

/// Everything a request needs to pick its upstream.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub(crate) upstreams: Arc<[Upstream]>,
    pub(crate) split: TrafficSplit,
    /// Cumulative weights in basis points, one per upstream, in upstream order: upstream `i`
    /// takes draws in `cumulative[i-1]..cumulative[i]`.
    pub(crate) cumulative: Vec<u16>,
    pub(crate) routes: Vec<Targeted<HeaderRoute>>,
    pub(crate) mirrors: Vec<Targeted<Mirror>>,
    pub(crate) sticky: Option<Sticky>,
}

/// Sticky sessions as the proxy applies them.
#[derive(Debug, Clone)]
pub(crate) struct Sticky {
    pub(crate) cookie: String,
    /// `Set-Cookie` values per upstream, prepared once so requests do not format them.
    pub(crate) set_cookie: Vec<http::HeaderValue>,
}

/// Why a request went where it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Route,
    Sticky,
    Weight,
}

impl Table {
    pub(crate) fn new(upstreams: Arc<[Upstream]>, split: TrafficSplit) -> Self {
        let cumulative = cumulative(&upstreams, &split);
        Table {
            upstreams,
            split,
            cumulative,
            routes: Vec::new(),
            mirrors: Vec::new(),
            sticky: None,
        }
    }

    pub(crate) fn with_split(&self, split: TrafficSplit) -> Self {
        Table {
            cumulative: cumulative(&self.upstreams, &split),
            split,
            ..self.clone()
        }
    }

    pub(crate) fn index_of(&self, revision: &RevisionId) -> Option<usize> {
        self.upstreams.iter().position(|u| u.revision == *revision)
    }

    /// The upstream for a request with these headers, and why.
    pub(crate) fn pick(&self, headers: &HeaderMap) -> (usize, Reason) {
        for entry in &self.routes {
            if matches_all(&entry.rule.matches, headers) {
                return (entry.upstream, Reason::Route);
            }
        }
        if let Some(sticky) = &self.sticky
            && let Some(value) = cookie(headers, &sticky.cookie)
            && let Some(i) = self
                .upstreams
                .iter()
                .position(|u| u.revision.as_str() == value)
            && self.weight_of(i) > 0
        {
            return (i, Reason::Sticky);
        }
        (self.weighted(fastrand::u16(0..10_000)), Reason::Weight)
    }

    /// The upstream a draw in `0..10_000` lands on.
    pub(crate) fn weighted(&self, draw: u16) -> usize {
        self.cumulative
            .iter()
            .position(|&c| draw < c)
            .unwrap_or(self.cumulative.len().saturating_sub(1))
    }

    fn weight_of(&self, i: usize) -> u16 {
        let prev = if i == 0 { 0 } else { self.cumulative[i - 1] };
        self.cumulative[i] - prev
    }

    /// The upstream a request should be copied to, if any.
    pub(crate) fn mirror_for(&self, headers: &HeaderMap) -> Option<usize> {
        self.mirrors.iter().find_map(|m| {
            let hit = fastrand::u16(0..10_000) < m.rule.percentage.basis_points()
                && matches_all(&m.rule.matches, headers);
            hit.then_some(m.upstream)
        })
    }
}

fn cumulative(upstreams: &[Upstream], split: &TrafficSplit) -> Vec<u16> {
    let mut sum = 0;
    upstreams
        .iter()
        .map(|u| {
            sum += split.weight(&u.revision).basis_points();
            sum
        })
        .collect()
}

fn matches_all(matches: &[RouteMatch], headers: &HeaderMap) -> bool {
    matches.iter().all(|m| match m {
        RouteMatch::Header { name, value } => headers
            .get_all(name.as_str())
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| string_match(value, v))),
        RouteMatch::Cookie { name, value } => {
            cookie(headers, name).is_some_and(|v| string_match(value, v))
        }
    })
}

fn string_match(m: &StringMatch, value: &str) -> bool {
    match m {
        StringMatch::Exact(s) => value == s,
        StringMatch::Prefix(s) => value.starts_with(s.as_str()),
        // Rejected when the route is set; never reaches a table.
        StringMatch::Regex(_) => false,
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// Whether any condition uses a regular expression (the proxy matches exact and prefix only).
pub(crate) fn uses_regex(matches: &[RouteMatch]) -> bool {
    matches.iter().any(|m| {
        matches!(
            m,
            RouteMatch::Header {
                value: StringMatch::Regex(_),
                ..
            } | RouteMatch::Cookie {
                value: StringMatch::Regex(_),
                ..
            }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::wall_now;
    use cutover_core::Weight;

    fn table(weight_v2: u16) -> Table {
        let ups: Vec<Upstream> = ["v1", "v2"]
            .iter()
            .enumerate()
            .map(|(i, r)| Upstream {
                revision: r.parse().unwrap(),
                addr: SocketAddr::from(([127, 0, 0, 1], 1000 + u16::try_from(i).unwrap())),
                authority: Authority::from_static("127.0.0.1:1000"),
                stats: Arc::new(RevisionStats::new(r.parse().unwrap(), wall_now(), 1)),
            })
            .collect();
        let split = TrafficSplit::canary(
            &"v1".parse().unwrap(),
            &"v2".parse().unwrap(),
            Weight::from_basis_points(weight_v2).unwrap(),
        )
        .unwrap();
        Table::new(ups.into(), split)
    }

    #[test]
    fn draws_land_by_cumulative_weight() {
        let t = table(1000);
        assert_eq!(t.weighted(0), 0);
        assert_eq!(t.weighted(8999), 0);
        assert_eq!(t.weighted(9000), 1);
        assert_eq!(t.weighted(9999), 1);
        let all_v1 = table(0);
        assert_eq!(all_v1.weighted(9999), 0);
        let all_v2 = table(10_000);
        assert_eq!(all_v2.weighted(0), 1);
    }

    #[test]
    fn routes_match_headers_and_cookies() {
        let mut t = table(0);
        t.routes.push(Targeted {
            rule: HeaderRoute::new("beta", [RouteMatch::cookie_exact("group", "b")]).unwrap(),
            upstream: 1,
        });
        let mut h = HeaderMap::new();
        h.insert(COOKIE, "a=1; group=b".parse().unwrap());
        assert_eq!(t.pick(&h), (1, Reason::Route));
        h.insert(COOKIE, "group=bb".parse().unwrap());
        assert_eq!(t.pick(&h), (0, Reason::Weight));
    }
}
