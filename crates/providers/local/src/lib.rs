//! Embedded weighted HTTP proxy router, HTTP health probe and proxy-recorded metrics for cutover.
//!
//! Not built yet.
#![forbid(unsafe_code)]
