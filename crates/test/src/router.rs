use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use cutover_core::{
    ErrorKind, Granularity, HeaderRoute, Mirror, ProviderError, RevisionId, RouterCapabilities,
    StickySession, TrafficRouter, TrafficSplit,
};
use parking_lot::Mutex;

use crate::Faults;

/// A [`TrafficRouter`] that remembers every split it was given and can be told to fail.
///
/// By default it can express any basis point, supports every optional capability, and reads its
/// split back. Operations for [`Faults`]: `set_split`, `current_split`, `set_header_route`,
/// `remove_header_route`, `set_mirror`, `remove_mirror`, `set_sticky_sessions`.
#[derive(Debug, Clone)]
pub struct FakeRouter {
    name: String,
    capabilities: RouterCapabilities,
    read_back: bool,
    faults: Faults,
    world: Arc<Mutex<RouterWorld>>,
}

#[derive(Debug, Default)]
struct RouterWorld {
    splits: Vec<TrafficSplit>,
    current: Option<TrafficSplit>,
    misreport: Option<(TrafficSplit, usize)>,
    header_routes: BTreeMap<String, (HeaderRoute, RevisionId)>,
    mirrors: BTreeMap<String, (Mirror, RevisionId)>,
    sticky: Option<StickySession>,
    /// Operation names: static, so a long history costs a pointer a call.
    calls: Vec<&'static str>,
}

impl FakeRouter {
    /// A router called `name` with every capability at basis-point granularity.
    pub fn new(name: impl Into<String>) -> Self {
        FakeRouter {
            name: name.into(),
            capabilities: RouterCapabilities::new(Granularity::BASIS_POINT)
                .with_header_routes()
                .with_cookie_routes()
                .with_mirroring()
                .with_sticky_sessions(),
            read_back: true,
            faults: Faults::default(),
            world: Arc::default(),
        }
    }

    /// Declares other capabilities; calls to capabilities it lacks return `Unsupported`.
    pub fn with_capabilities(mut self, capabilities: RouterCapabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Makes `current_split` return `None`, like a router that cannot read back.
    pub fn without_read_back(mut self) -> Self {
        self.read_back = false;
        self
    }

    /// The injected errors.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The next `times` reads return `split` whatever was set, like a router whose data plane
    /// did not follow.
    pub fn misreport(&self, split: TrafficSplit, times: usize) {
        self.world.lock().misreport = Some((split, times));
    }

    /// Every split set, in order (successful calls only).
    pub fn splits(&self) -> Vec<TrafficSplit> {
        self.world.lock().splits.clone()
    }

    /// The split in effect.
    pub fn current(&self) -> Option<TrafficSplit> {
        self.world.lock().current.clone()
    }

    /// Header routes in effect, by name, with their revision.
    pub fn header_routes(&self) -> BTreeMap<String, (HeaderRoute, RevisionId)> {
        self.world.lock().header_routes.clone()
    }

    /// Mirrors in effect, by name, with their revision.
    pub fn mirrors(&self) -> BTreeMap<String, (Mirror, RevisionId)> {
        self.world.lock().mirrors.clone()
    }

    /// Sticky sessions in effect.
    pub fn sticky_sessions(&self) -> Option<StickySession> {
        self.world.lock().sticky.clone()
    }

    /// Every call, in order, by operation name (failed ones included).
    pub fn calls(&self) -> Vec<String> {
        self.world
            .lock()
            .calls
            .iter()
            .map(|&op| op.to_owned())
            .collect()
    }

    fn enter(&self, op: &'static str, supported: bool) -> Result<(), ProviderError> {
        self.world.lock().calls.push(op);
        if !supported {
            return Err(ProviderError::unsupported(op));
        }
        self.faults.check(op)
    }
}

#[async_trait]
impl TrafficRouter for FakeRouter {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> RouterCapabilities {
        self.capabilities
    }

    async fn set_split(&self, split: &TrafficSplit) -> Result<(), ProviderError> {
        self.enter("set_split", true)?;
        if let Some((revision, weight)) = self.capabilities.granularity.first_inexpressible(split) {
            return Err(ProviderError::new(
                ErrorKind::Permanent,
                format!(
                    "{weight} for `{revision}` is not a multiple of {}",
                    self.capabilities.granularity
                ),
            ));
        }
        let mut world = self.world.lock();
        world.splits.push(split.clone());
        world.current = Some(split.clone());
        Ok(())
    }

    async fn current_split(&self) -> Result<Option<TrafficSplit>, ProviderError> {
        self.enter("current_split", true)?;
        if !self.read_back {
            return Ok(None);
        }
        let mut world = self.world.lock();
        if let Some((split, times)) = &mut world.misreport
            && *times > 0
        {
            *times -= 1;
            return Ok(Some(split.clone()));
        }
        Ok(world.current.clone())
    }

    async fn set_header_route(
        &self,
        route: &HeaderRoute,
        revision: &RevisionId,
    ) -> Result<(), ProviderError> {
        let caps = self.capabilities;
        let supported = (caps.header_routes || !route.uses_headers())
            && (caps.cookie_routes || !route.uses_cookies());
        self.enter("set_header_route", supported)?;
        self.world
            .lock()
            .header_routes
            .insert(route.name.clone(), (route.clone(), revision.clone()));
        Ok(())
    }

    async fn remove_header_route(&self, name: &str) -> Result<(), ProviderError> {
        let caps = self.capabilities;
        self.enter(
            "remove_header_route",
            caps.header_routes || caps.cookie_routes,
        )?;
        self.world.lock().header_routes.remove(name);
        Ok(())
    }

    async fn set_mirror(
        &self,
        mirror: &Mirror,
        revision: &RevisionId,
    ) -> Result<(), ProviderError> {
        self.enter("set_mirror", self.capabilities.mirroring)?;
        self.world
            .lock()
            .mirrors
            .insert(mirror.name.clone(), (mirror.clone(), revision.clone()));
        Ok(())
    }

    async fn remove_mirror(&self, name: &str) -> Result<(), ProviderError> {
        self.enter("remove_mirror", self.capabilities.mirroring)?;
        self.world.lock().mirrors.remove(name);
        Ok(())
    }

    async fn set_sticky_sessions(
        &self,
        sticky: Option<StickySession>,
    ) -> Result<(), ProviderError> {
        self.enter("set_sticky_sessions", self.capabilities.sticky_sessions)?;
        self.world.lock().sticky = sticky;
        Ok(())
    }
}
