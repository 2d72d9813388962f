//! The engine's pure planning: deadline arithmetic that cannot panic (every engine deadline is
//! `now` plus a duration that may come from a config file or a request, so it is added with
//! [`deadline_after`]), and the start order of programs. No clocks are read here; the fuzz
//! target `config_engine` feeds parsed configs through these and the state machine.

use std::time::{Duration, Instant};

use crate::config::ProgramSpec;

/// What orders programs: lower priority first, then by name (supervisord's order); stopping
/// goes the other way. `depends_on` is applied on top, by waiting (see the engine).
pub fn start_key(spec: &ProgramSpec) -> (i64, &str) {
    (i64::from(spec.priority), spec.name.as_str())
}

/// The indices of `specs` in start order.
pub fn start_order(specs: &[ProgramSpec]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..specs.len()).collect();
    order.sort_by(|&a, &b| start_key(&specs[a]).cmp(&start_key(&specs[b])));
    order
}

/// A deadline this far away never comes in practice (about 100 years).
pub const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + d`, or — when that does not fit in an `Instant` — a deadline [`FAR_FUTURE`] away (or
/// `now` itself if even that does not fit, which no real clock reaches). Never panics.
pub fn deadline_after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(FAR_FUTURE.min(d)))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_saturate_instead_of_panicking() {
        let now = Instant::now();
        assert_eq!(
            deadline_after(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert_eq!(deadline_after(now, Duration::ZERO), now);
        let far = deadline_after(now, Duration::MAX);
        assert!(far >= now + Duration::from_secs(3600 * 24 * 365));
        assert_eq!(
            deadline_after(now, Duration::from_secs(u64::MAX)),
            now + FAR_FUTURE
        );
    }
}
