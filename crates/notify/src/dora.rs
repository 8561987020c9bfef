//! DORA figures.
