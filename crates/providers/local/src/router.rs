//! [`ProxyRouter`], the [`TrafficRouter`] of the local proxy: it checks each change and swaps
//! in a whole new routing table.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use cutover_core::{
    Granularity, HeaderRoute, Mirror, ProviderError, RevisionId, RouterCapabilities, StickySession,
    TrafficRouter, TrafficSplit,
};
use http::HeaderValue;

use crate::table::{Sticky, Table, Targeted, remove, upsert, uses_regex};

/// The [`TrafficRouter`] of a [`LocalProxy`](crate::LocalProxy): weights in basis points, header and cookie
/// routes (exact and prefix matches; regular expressions answer `Permanent`), mirroring and
/// sticky sessions. Every change swaps the routing table atomically and is in force for the
/// next request when the call returns.
#[derive(Debug, Clone)]
pub struct ProxyRouter {
    inner: Arc<Routing>,
}

#[derive(Debug)]
struct Routing {
    /// The proxy's name, for errors.
    name: String,
    table: ArcSwap<Table>,
    /// Counts the tables stored, so a serving thread with a copy of its own knows when to
    /// take a new one.
    generation: AtomicU64,
    /// Serializes writers, so two changes never race on the read-modify-write of the table.
    writer: tokio::sync::Mutex<()>,
}

impl ProxyRouter {
    pub(crate) fn new(name: String, table: Table) -> Self {
        ProxyRouter {
            inner: Arc::new(Routing {
                name,
                table: ArcSwap::from_pointee(table),
                generation: AtomicU64::new(0),
                writer: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The table in force now; a request keeps it until it ends.
    pub(crate) fn table(&self) -> Arc<Table> {
        self.inner.table.load_full()
    }

    /// Changes with every table stored: a copy taken after reading it is at least as new.
    pub(crate) fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// The split in force now (no `await`, for progress displays).
    pub fn split(&self) -> TrafficSplit {
        self.inner.table.load().split.clone()
    }

    async fn update(
        &self,
        change: impl FnOnce(&Table) -> Result<Table, ProviderError>,
    ) -> Result<(), ProviderError> {
        let _writer = self.inner.writer.lock().await;
        let current = self.inner.table.load_full();
        let next = change(&current)?;
        self.inner.table.store(Arc::new(next));
        self.inner.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    fn upstream(&self, table: &Table, revision: &RevisionId) -> Result<usize, ProviderError> {
        table.index_of(revision).ok_or_else(|| {
            ProviderError::permanent(format!(
                "proxy `{}` has no upstream for revision `{revision}`",
                self.inner.name
            ))
        })
    }

    /// A rule must be valid and use no regular expressions (the proxy matches exact values
    /// and prefixes).
    fn check_rule(
        &self,
        what: &str,
        name: &str,
        valid: Result<(), cutover_core::RouteError>,
        matches: &[cutover_core::RouteMatch],
    ) -> Result<(), ProviderError> {
        valid.map_err(|e| ProviderError::permanent(format!("proxy `{}`: {e}", self.inner.name)))?;
        if uses_regex(matches) {
            return Err(ProviderError::permanent(format!(
                "proxy `{}`: {what} `{name}` uses a regular expression; the local proxy matches exact values and prefixes",
                self.inner.name
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl TrafficRouter for ProxyRouter {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn capabilities(&self) -> RouterCapabilities {
        RouterCapabilities::new(Granularity::BASIS_POINT)
            .with_header_routes()
            .with_cookie_routes()
            .with_mirroring()
            .with_sticky_sessions()
    }

    async fn set_split(&self, split: &TrafficSplit) -> Result<(), ProviderError> {
        self.update(|table| {
            for (revision, _) in split.iter() {
                self.upstream(table, revision)?;
            }
            Ok(table.with_split(split.clone()))
        })
        .await
    }

    async fn current_split(&self) -> Result<Option<TrafficSplit>, ProviderError> {
        Ok(Some(self.split()))
    }

    async fn set_header_route(
        &self,
        route: &HeaderRoute,
        revision: &RevisionId,
    ) -> Result<(), ProviderError> {
        self.check_rule("route", &route.name, route.validate(), &route.matches)?;
        self.update(|table| {
            let mut next = table.clone();
            let upstream = self.upstream(table, revision)?;
            upsert(
                &mut next.routes,
                Targeted {
                    rule: route.clone(),
                    upstream,
                },
            );
            Ok(next)
        })
        .await
    }

    async fn remove_header_route(&self, name: &str) -> Result<(), ProviderError> {
        self.update(|table| {
            let mut next = table.clone();
            remove(&mut next.routes, name);
            Ok(next)
        })
        .await
    }

    async fn set_mirror(
        &self,
        mirror: &Mirror,
        revision: &RevisionId,
    ) -> Result<(), ProviderError> {
        self.check_rule("mirror", &mirror.name, mirror.validate(), &mirror.matches)?;
        self.update(|table| {
            let mut next = table.clone();
            let upstream = self.upstream(table, revision)?;
            upsert(
                &mut next.mirrors,
                Targeted {
                    rule: mirror.clone(),
                    upstream,
                },
            );
            Ok(next)
        })
        .await
    }

    async fn remove_mirror(&self, name: &str) -> Result<(), ProviderError> {
        self.update(|table| {
            let mut next = table.clone();
            remove(&mut next.mirrors, name);
            Ok(next)
        })
        .await
    }

    async fn set_sticky_sessions(
        &self,
        sticky: Option<StickySession>,
    ) -> Result<(), ProviderError> {
        let name = self.inner.name.clone();
        self.update(|table| {
            let mut next = table.clone();
            next.sticky = match sticky {
                None => None,
                Some(settings) => {
                    let cookie = settings
                        .cookie
                        .clone()
                        .unwrap_or_else(|| "cutover-revision".to_owned());
                    let set_cookie = table
                        .upstreams
                        .iter()
                        .map(|u| {
                            HeaderValue::try_from(format!(
                                "{cookie}={}; Max-Age={}; Path=/; HttpOnly",
                                u.revision,
                                settings.duration.as_secs()
                            ))
                            .map_err(|e| {
                                ProviderError::permanent(format!(
                                    "proxy `{name}`: `{cookie}` cannot be a cookie name"
                                ))
                                .with_source(e)
                            })
                        })
                        .collect::<Result<_, _>>()?;
                    Some(Sticky { cookie, set_cookie })
                }
            };
            Ok(next)
        })
        .await
    }
}
