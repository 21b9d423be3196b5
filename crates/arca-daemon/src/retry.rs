//! When a failed run tries again: exponential backoff with full jitter
//! (a random delay up to the ceiling, so that runs failing together do
//! not retry together).

use arca_jobs::config::Retry;

/// The delay before try `attempt + 1`, after try `attempt` (1-based)
/// failed, in seconds: uniform in `0..=min(max, initial × factor^(attempt−1))`.
/// `None` when the tries are used up.
pub fn delay(policy: &Retry, attempt: u32, random_upto: &mut dyn FnMut(u64) -> u64) -> Option<u64> {
    if attempt >= policy.attempts {
        return None;
    }
    let ceiling = policy.initial_secs as f64 * policy.factor.powi(attempt.saturating_sub(1) as i32);
    let ceiling = ceiling.min(policy.max_secs as f64).max(0.0) as u64;
    Some(random_upto(ceiling))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_grows_by_the_factor_up_to_the_maximum_and_tries_run_out() {
        let p = Retry { attempts: 5, initial_secs: 10, factor: 3.0, max_secs: 60 };
        let mut highest = |n: u64| n;
        let ceilings: Vec<_> = (1..=5).map(|a| delay(&p, a, &mut highest)).collect();
        assert_eq!(ceilings, vec![Some(10), Some(30), Some(60), Some(60), None]);
        let mut lowest = |_: u64| 0;
        assert_eq!(delay(&p, 2, &mut lowest), Some(0), "full jitter: anywhere from zero");
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let d = delay(&p, 2, &mut crate::schedule::random_upto).unwrap();
            assert!(d <= 30);
            seen.insert(d);
        }
        assert!(seen.len() > 10, "spread out: {seen:?}");
    }
}
