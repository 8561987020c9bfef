//! AWS Application Load Balancer provider for cutover: weighted forward actions, target health, target replacement.
//!
//! Not built yet.
#![forbid(unsafe_code)]
