//! Firmware-shaped smoke test: tollgate-core limiters in `static`s, a tick
//! clock, no allocator, no std. CI builds it for thumbv7em, thumbv6m and
//! riscv32imc (`ci/embedded.sh`); the ELF's symbols give the code size.
#![no_std]
#![no_main]

use core::num::NonZeroU32;

// Link the critical-section implementations the firmware chose (see
// Cargo.toml); nothing else refers to these crates.
#[cfg(all(target_arch = "arm", not(target_has_atomic = "32")))]
use cortex_m as _;
#[cfg(target_arch = "riscv32")]
use riscv as _;
use tollgate_core::{
    All, Clock, Decision, FixedWindow, Gcra, LeaseSemaphore, Limiter, ManualClock, Nanos, Quota,
    Semaphore, SlidingLog, SlidingWindow,
};

/// 100 requests per second, bursts of 10.
static LIMIT: Gcra = Gcra::new(
    Quota::per_second(NonZeroU32::new(100).unwrap()).with_burst(NonZeroU32::new(10).unwrap()),
);
/// At most 8 in any one-second window.
static WINDOW: SlidingLog<8> = match SlidingLog::new(Nanos::from_secs(1)) {
    Ok(log) => log,
    Err(_) => panic!("one second is a valid window"),
};
/// 50 per calendar second of a wall clock whose epoch we do not know (offset 0).
static PER_SECOND: FixedWindow = match FixedWindow::new(
    NonZeroU32::new(50).unwrap(),
    Nanos::from_secs(1),
    Nanos::ZERO,
) {
    Ok(w) => w,
    Err(_) => panic!("one second is a valid window"),
};
/// About 30 per sliding 100 ms.
static SMOOTH: SlidingWindow =
    match SlidingWindow::new(NonZeroU32::new(30).unwrap(), Nanos::from_millis(100)) {
        Ok(w) => w,
        Err(_) => panic!("valid window"),
    };
/// Three concurrent transfers.
static TRANSFERS: Semaphore = Semaphore::new(3);
/// Two concurrent jobs, each leased for at most 5 ms.
static JOBS: LeaseSemaphore<2> = LeaseSemaphore::new();
/// A 1 kHz tick counter as the clock.
static CLOCK: ManualClock = ManualClock::new(Nanos::ZERO);

/// The GCRA check behind a symbol of its own, so that `ci/size.sh` can read its
/// code size from the ELF: `Gcra::check` is `#[inline]`, so what the optimiser
/// inlines of it (`check_n`, `step`, the `Decision` it builds) lands here and
/// what it does not is called from here (listed by `ci/size.sh`). It returns
/// the whole `Decision` (remaining, reset/retry times), not a `bool`, so that
/// none of the check's work is optimised away.
#[inline(never)]
fn gcra_check(limiter: &Gcra, now: Nanos) -> Decision {
    limiter.check(now)
}

fn run() -> ! {
    let mut admitted: u32 = 0;
    loop {
        CLOCK.advance(Nanos::from_millis(1));
        let now = CLOCK.now();
        if All((&LIMIT, &WINDOW, &PER_SECOND, &SMOOTH))
            .check(now)
            .is_allowed()
        {
            admitted = admitted.wrapping_add(1);
        }
        // `black_box` on the argument: LTO must not specialise `gcra_check`
        // for `LIMIT`'s quota, the measured code is the general check.
        let _ = core::hint::black_box(gcra_check(core::hint::black_box(&LIMIT), now));
        if let Ok(job) = JOBS.try_acquire_until(now, now + Nanos::from_millis(5)) {
            core::hint::black_box(&job);
        }
        if let Ok(transfer) = TRANSFERS.try_acquire(1) {
            core::hint::black_box(&transfer);
        }
        core::hint::black_box(admitted);
    }
}

#[cfg(target_arch = "arm")]
#[cortex_m_rt::entry]
fn main() -> ! {
    run()
}

#[cfg(target_arch = "riscv32")]
#[riscv_rt::entry]
fn main() -> ! {
    run()
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
