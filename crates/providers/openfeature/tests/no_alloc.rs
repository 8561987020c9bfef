//! `Flags::evaluate` allocates nothing: a counting global allocator (`stats_alloc`, so no
//! `unsafe` here) watches a loop of evaluations after a warm-up.

use std::alloc::System;

use cutover_core::{TrafficSplit, Weight};
use cutover_openfeature::{FlagDefinition, Flags};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn evaluating_a_split_flag_allocates_nothing() {
    let flags = Flags::new();
    flags
        .define(FlagDefinition::boolean("checkout.new-path", "old", "new").unwrap())
        .unwrap();
    let split = TrafficSplit::canary(
        &"old".parse().unwrap(),
        &"new".parse().unwrap(),
        Weight::from_percent(25).unwrap(),
    )
    .unwrap();
    flags.set_split("checkout.new-path", &split).unwrap();
    let users: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();
    // Warm-up: anything lazily built on first use is built here, outside the region.
    let _ = flags.evaluate("checkout.new-path", Some("user-0")).unwrap();

    let region = Region::new(GLOBAL);
    let mut on = 0_u32;
    for user in &users {
        let value = flags.evaluate("checkout.new-path", Some(user)).unwrap();
        if value.as_bool().unwrap() {
            on += 1;
        }
    }
    let stats = region.change();

    assert!(
        (150..350).contains(&on),
        "{on} of 1000 users have the flag at 25 %"
    );
    assert_eq!(stats.allocations, 0, "{stats:?}");
    assert_eq!(stats.reallocations, 0, "{stats:?}");
}
