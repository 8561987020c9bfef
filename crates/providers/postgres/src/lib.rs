//! Expand/contract schema migrations on PostgreSQL as cutover MigrationSteps.
//!
//! Not built yet.
#![forbid(unsafe_code)]
