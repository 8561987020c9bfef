//! Kubernetes provider for cutover: Deployments, Service-selector and Gateway API routers, pod probe, ConfigMap state, Lease.
//!
//! Not built yet.
#![forbid(unsafe_code)]
