//! The engine's clock and its test clock, in a process of their own: moving the clock would
//! disturb other tests that read it.

use influxify_store::clock::{TestClock, now_ms, wall_ms};

#[test]
fn one_test_clock_moves_the_engine_clock_forward() {
    const TWO_HOURS: u64 = 2 * 3_600_000;
    let before = now_ms();
    assert!(before.abs_diff(wall_ms()) < 1_000, "no offset before");
    let clock = TestClock::take().expect("the first take gets the clock");
    assert!(TestClock::take().is_none(), "only one test clock exists");
    assert_eq!(clock.advance(TWO_HOURS), TWO_HOURS);
    let after = now_ms();
    assert!(after >= before + TWO_HOURS, "{before} -> {after}");
    assert!(after - wall_ms() >= TWO_HOURS);
    assert_eq!(clock.advance(1), TWO_HOURS + 1);
    assert_eq!(clock.offset_ms(), TWO_HOURS + 1);
}
