//! A shared token bucket that keeps this process below Route 53's API limit (5 requests/s per
//! account), and the retry schedule (exponential backoff with jitter).
//!
//! The bucket is a GCRA ("virtual scheduling"): each `acquire` reserves the next free slot and
//! sleeps until it. Slots are handed out in call order, so concurrent callers queue fairly, and
//! in any window of `W` at most `burst + W / interval` requests start.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Route 53's documented limit is 5 requests/s per account; stay below it.
pub const DEFAULT_REQUESTS_PER_SECOND: u32 = 4;

/// Token bucket shared by every client of a process (`Arc<RateLimiter>`).
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    /// How far ahead of `now` the next slot may be and still be granted immediately.
    tolerance: Duration,
    /// Theoretical arrival time of the next request.
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// `per_second` requests per second on average, `burst` at once after a quiet period.
    /// Both are clamped to at least 1.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let interval = Duration::from_secs(1) / per_second.max(1);
        Self {
            interval,
            tolerance: interval * (burst.max(1) - 1),
            next: Mutex::new(None),
        }
    }

    /// Route 53's budget: 4 requests/s, no burst.
    pub fn route53_default() -> Self {
        Self::new(DEFAULT_REQUESTS_PER_SECOND, 1)
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Waits for a slot. Cancelling the wait gives up the reserved slot (the budget stays
    /// conservative).
    pub async fn acquire(&self) {
        let at = self.reserve(Instant::now());
        tokio::time::sleep_until(at).await;
    }

    /// Reserves the next slot at or after `now` and returns when it starts.
    fn reserve(&self, now: Instant) -> Instant {
        // A poisoned lock only means another task panicked between two plain assignments;
        // the value is still a valid instant.
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let tat = next.map_or(now, |t| t.max(now));
        let start = tat.checked_sub(self.tolerance).map_or(now, |t| t.max(now));
        *next = Some(tat.max(start) + self.interval);
        start
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::route53_default()
    }
}

/// When to give up on a retryable failure, and how long to wait between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, including the first (≥ 1).
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles each time.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// No attempt starts after this much time since the first one.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            deadline: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based): "equal jitter", uniformly in
    /// [d/2, d] with d = min(max, initial · 2^(attempt-1)), so waits grow but never collapse
    /// to zero.
    pub fn backoff(&self, attempt: u32, jitter: &Jitter) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let full = self
            .initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff);
        let half = full / 2;
        let span_ms = u64::try_from((full - half).as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(jitter.below(span_ms.saturating_add(1)))
    }
}

/// A small seeded PRNG (SplitMix64) for backoff jitter; tests fix the seed.
#[derive(Debug)]
pub struct Jitter(Mutex<u64>);

impl Jitter {
    pub fn seeded(seed: u64) -> Self {
        Self(Mutex::new(seed))
    }

    /// Seeded from the OS; a failing OS RNG only costs jitter quality, so fall back to a
    /// fixed seed.
    pub fn from_os() -> Self {
        let seed = getrandom::u64().unwrap_or(0x9e37_79b9_7f4a_7c15);
        Self::seeded(seed)
    }

    /// Uniform-ish in `0..n` (`0` when `n == 0`).
    pub fn below(&self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bucket_spaces_requests_by_the_interval() {
        let limiter = RateLimiter::new(4, 1);
        let t0 = Instant::now();
        let mut starts = Vec::new();
        for _ in 0..9 {
            limiter.acquire().await;
            starts.push(t0.elapsed());
        }
        for (i, s) in starts.iter().enumerate() {
            assert_eq!(*s, Duration::from_millis(250) * i as u32, "slot {i}");
        }
        // No more than 4 starts in any half-open second.
        for w in starts.windows(5) {
            assert!(w[4] - w[0] >= Duration::from_secs(1));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_allows_a_burst_after_a_quiet_period_then_the_rate() {
        let limiter = RateLimiter::new(4, 3);
        let t0 = Instant::now();
        let mut starts = Vec::new();
        for _ in 0..5 {
            limiter.acquire().await;
            starts.push(t0.elapsed());
        }
        let ms: Vec<u128> = starts.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, vec![0, 0, 0, 250, 500]);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_the_budget() {
        let limiter = std::sync::Arc::new(RateLimiter::new(4, 1));
        let t0 = Instant::now();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let l = limiter.clone();
                tokio::spawn(async move {
                    l.acquire().await;
                    t0.elapsed()
                })
            })
            .collect();
        let mut starts = Vec::new();
        for t in tasks {
            starts.push(t.await.expect("task"));
        }
        starts.sort();
        assert_eq!(starts.last().copied(), Some(Duration::from_millis(1750)));
        for w in starts.windows(2) {
            assert_eq!(w[1] - w[0], Duration::from_millis(250));
        }
    }

    #[test]
    fn backoff_grows_with_equal_jitter_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            deadline: Duration::from_secs(60),
        };
        let jitter = Jitter::seeded(7);
        for _ in 0..200 {
            let b1 = policy.backoff(1, &jitter);
            assert!((50..=100).contains(&b1.as_millis()), "{b1:?}");
            let b3 = policy.backoff(3, &jitter);
            assert!((200..=400).contains(&b3.as_millis()), "{b3:?}");
            let b9 = policy.backoff(9, &jitter);
            assert!((1000..=2000).contains(&b9.as_millis()), "{b9:?}");
            let huge = policy.backoff(u32::MAX, &jitter);
            assert!(huge <= Duration::from_secs(2));
        }
    }

    #[test]
    fn jitter_is_deterministic_per_seed() {
        let a = Jitter::seeded(42);
        let b = Jitter::seeded(42);
        let xs: Vec<u64> = (0..10).map(|_| a.below(1000)).collect();
        let ys: Vec<u64> = (0..10).map(|_| b.below(1000)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().any(|&x| x != xs[0]));
    }
}
