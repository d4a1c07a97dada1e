//! What the real-thread stress tests (`stress_threads.rs`,
//! `stress_token_bucket.rs`) share: the seed of their per-thread generators
//! and the generator itself.

/// `STRESS_SEED` if set (and a number), else one from the time; the tests
/// print it on failure.
pub fn seed() -> u64 {
    std::env::var("STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            t.map_or(1, |d| d.as_secs() ^ u64::from(d.subsec_nanos()) << 32)
        })
}

/// xorshift64*: costs, keys, refunds, scripted histories.
pub struct Rng(u64);

impl Rng {
    /// The generator of thread `thread` for `seed`.
    pub fn new(seed: u64, thread: usize) -> Rng {
        Rng((seed ^ (thread as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        u32::try_from(((x >> 32) * u64::from(n)) >> 32).unwrap()
    }
}
