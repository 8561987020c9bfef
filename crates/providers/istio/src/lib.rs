//! Istio provider for cutover: VirtualService weights, header routes, mirroring, DestinationRule subsets.
//!
//! Not built yet.
#![forbid(unsafe_code)]
