//! `Semaphore` and `LeaseSemaphore<4>` driven by arbitrary operations,
//! against models of what is held.
//!
//! `Semaphore` (model: the guards held, in a `Vec`, plus a count of forgotten
//! permits — as in `core/tests/model_semaphore.rs`):
//! * `in_use()` equals the model's count and never exceeds `max`;
//!   `available() = max − in_use()`;
//! * `try_acquire(n)` fails with `TooMany` exactly when `n > max`, with
//!   `Full { in_use, max, requested }` (the exact counts) exactly when
//!   `in_use + n > max`, and otherwise returns a permit of `n`;
//! * `release(n)` succeeds exactly when `n <=` the forgotten permits, and
//!   otherwise fails with `ReleaseError { requested, forgotten }`, changing
//!   nothing (it can never give back permits a guard still holds).
//!
//! `LeaseSemaphore<4>` (model: every lease taken, with its deadline, whether it
//! was dropped, and whether its slot can have been re-taken since — only an
//! acquisition at a time `>=` its deadline can do that), with the clock
//! stepping both ways:
//! * `try_acquire_until` fails with `DeadlineNotAfterNow` exactly when
//!   `deadline <= now`; otherwise it succeeds exactly when `in_use(now) < 4`,
//!   and `Full` reports `in_use = max = 4` and a `retry_after` of at least 1 ns;
//! * `in_use(now)` is at most the leases not dropped and not expired at `now`
//!   (a deadline saturated at `u64::MAX` never expires), and at least those
//!   of them whose slot cannot have been re-taken:
//!   dropping (or renewing) a lease never frees (or takes) a slot that
//!   another live lease holds;
//! * `renew` fails with `DeadlineNotAfterNow` exactly when `deadline <= now`,
//!   and never fails with `Lost` for a lease whose slot cannot have been
//!   re-taken.
//!
//! Found here and fixed: when the clock stepped back, a lease whose slot was
//! re-taken after its deadline and given back could see the slot taken again
//! with the *same* deadline; dropping the stale lease then freed the new
//! holder's slot and a fifth lease fit into four. A lease given back early
//! now leaves a released marker, and a new deadline is later than every
//! earlier holder's still alive (a grant may be later than asked; renewals
//! never move a deadline earlier).
//! The inputs are seeds (`corpus/semaphore/*lease*aba*`).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tollgate_core::{
    AcquireError, Lease, LeaseError, LeaseSemaphore, Nanos, Permit, ReleaseError, Semaphore,
};

const LEASES: u32 = 4;

/// Skip the known finding's failure (see the module docs).

#[derive(Arbitrary, Debug)]
enum Op {
    Acquire(u8),
    AcquireBig(u32),
    Drop(u8),
    Forget(u8),
    Release(u8),
    ReleaseBig(u32),
    /// Move the lease clock by `dt` ns, backwards when `back`.
    Tick {
        back: bool,
        dt: u8,
    },
    /// A lease until `now + dur` (`dur == 0`: not after now), or for ever.
    LeaseAcquire {
        dur: u8,
        forever: bool,
    },
    LeaseDrop(u8),
    LeaseForget(u8),
    LeaseRenew {
        idx: u8,
        dur: u8,
    },
}

#[derive(Arbitrary, Debug)]
enum Max {
    Small(u8),
    Max,
}

#[derive(Arbitrary, Debug)]
struct Input {
    max: Max,
    start: u64,
    ops: Vec<Op>,
}

/// What the model knows of one lease.
#[derive(Clone, Copy, Debug)]
struct Held {
    deadline: u64,
    /// Its slot may have been taken by another lease: an acquisition
    /// succeeded at some time `>=` a deadline this lease had.
    exposed: bool,
}

impl Held {
    /// Whether the lease has expired at `now`. A deadline that saturated at
    /// `u64::MAX` never expires, not even at `now == u64::MAX` (the slots
    /// store it as "taken for ever").
    fn expired(&self, now: u64) -> bool {
        self.deadline <= now && self.deadline != u64::MAX
    }
}

fuzz_target!(|input: Input| {
    let max = match input.max {
        Max::Small(m) => u32::from(m % 9),
        Max::Max => u32::MAX,
    };
    let sem = Semaphore::new(max);
    let mut held: Vec<Permit<'_>> = Vec::new();
    let mut forgotten: u64 = 0;

    let leases = LeaseSemaphore::<{ LEASES as usize }>::new();
    assert_eq!(leases.max(), LEASES);
    // Leases still held by a guard, and forgotten ones (held until their
    // deadline), each with its model.
    let mut guards: Vec<(Lease<'_, { LEASES as usize }>, Held)> = Vec::new();
    let mut kept: Vec<Held> = Vec::new();
    let mut now = input.start;
    // Every deadline granted so far, and the latest `now` seen: a grant later
    // than asked must be explained by a stale holder, i.e. a deadline that
    // had passed by then (a slot is only taken over a passed deadline, and a
    // released marker carries such a one).
    let mut granted_all: Vec<u64> = Vec::new();
    let mut max_now = now;
    // An exposed lease was dropped or renewed while another live lease had
    // the same deadline: the known finding's trigger.

    for op in input.ops.iter().take(512) {
        match *op {
            Op::Acquire(n) => acquire(&sem, u32::from(n), max, &mut held, forgotten),
            Op::AcquireBig(n) => acquire(&sem, n, max, &mut held, forgotten),
            Op::Drop(i) if !held.is_empty() => {
                drop(held.swap_remove(usize::from(i) % held.len()));
            }
            Op::Forget(i) if !held.is_empty() => {
                let p = held.swap_remove(usize::from(i) % held.len());
                let n = p.count();
                assert_eq!(p.forget(), n);
                forgotten += u64::from(n);
            }
            Op::Release(n) => release(&sem, u32::from(n), &mut forgotten),
            Op::ReleaseBig(n) => release(&sem, n, &mut forgotten),
            Op::Drop(_) | Op::Forget(_) => {}

            Op::Tick { back, dt } => {
                let dt = u64::from(dt);
                now = if back {
                    now.saturating_sub(dt)
                } else {
                    now.saturating_add(dt)
                };
                max_now = max_now.max(now);
            }
            Op::LeaseAcquire { dur, forever } => {
                let deadline = if forever {
                    u64::MAX
                } else {
                    now.saturating_add(u64::from(dur))
                };
                let before = leases.in_use(Nanos::new(now));
                match leases.try_acquire_until(Nanos::new(now), Nanos::new(deadline)) {
                    Ok(lease) => {
                        assert!(deadline > now, "a lease not after now was granted");
                        assert!(before < LEASES, "a lease granted with all {LEASES} in use");
                        // As asked, or later when the slot was given back by
                        // a lease with a later deadline (a slot's deadlines
                        // only increase); 2^63 ns and beyond mean for ever.
                        let granted = lease.deadline().as_u64();
                        assert!(granted >= clamp(deadline), "{granted} < {deadline}");
                        // ... and no later than one past a deadline that had
                        // passed: a lease given back early must not lend its
                        // own deadline to the next (a 10 s lease made an hour
                        // long; found in the tenth session's review).
                        let stale = granted_all.iter().copied().filter(|&d| d <= max_now).max();
                        let bound = stale.map_or(0, |d| clamp(d.saturating_add(1)));
                        assert!(
                            granted == clamp(deadline) || granted <= bound || bound >= (1 << 63) - 1,
                            "granted {granted}, asked {deadline}, latest passed deadline {stale:?}"
                        );
                        granted_all.push(granted);
                        let deadline = granted;
                        // Any lease whose deadline has passed may have lost
                        // its slot to this one.
                        for h in guards.iter_mut().map(|(_, h)| h).chain(kept.iter_mut()) {
                            h.exposed |= h.expired(now);
                        }
                        guards.push((
                            lease,
                            Held {
                                deadline,
                                exposed: false,
                            },
                        ));
                    }
                    Err(LeaseError::DeadlineNotAfterNow) => assert!(deadline <= now),
                    Err(LeaseError::Full {
                        in_use,
                        max,
                        retry_after,
                    }) => {
                        assert!(deadline > now);
                        assert_eq!(before, LEASES, "refused with a lease free");
                        assert_eq!((in_use, max), (LEASES, LEASES));
                        assert!(retry_after >= Nanos::new(1));
                    }
                    Err(e) => panic!("unexpected {e:?} from try_acquire_until"),
                }
            }
            Op::LeaseDrop(i) if !guards.is_empty() => {
                let (lease, _) = guards.swap_remove(usize::from(i) % guards.len());
                drop(lease);
            }
            Op::LeaseForget(i) if !guards.is_empty() => {
                let (lease, h) = guards.swap_remove(usize::from(i) % guards.len());
                lease.forget();
                kept.push(h);
            }
            Op::LeaseRenew { idx, dur } if !guards.is_empty() => {
                let k = usize::from(idx) % guards.len();
                let (lease, h) = &mut guards[k];
                let deadline = now.saturating_add(u64::from(dur));
                match lease.renew(Nanos::new(now), Nanos::new(deadline)) {
                    Ok(()) => {
                        assert!(deadline > now);
                        // Never earlier than before.
                        let want = clamp(deadline.max(h.deadline));
                        assert_eq!(lease.deadline(), Nanos::new(want));
                        h.deadline = want;
                        granted_all.push(want);
                    }
                    Err(LeaseError::DeadlineNotAfterNow) => assert!(deadline <= now),
                    Err(LeaseError::Lost) => {
                        assert!(deadline > now);
                        assert!(h.exposed, "renew lost a slot nobody could have taken: {h:?}");
                    }
                    Err(e) => panic!("unexpected {e:?} from renew"),
                }
            }
            Op::LeaseDrop(_) | Op::LeaseForget(_) | Op::LeaseRenew { .. } => {}
        }

        // Semaphore: the count equals the model's, within the limit.
        let in_use = held.iter().map(|p| u64::from(p.count())).sum::<u64>() + forgotten;
        assert!(in_use <= u64::from(max), "model holds {in_use} > max {max}");
        assert_eq!(
            u64::from(sem.in_use()),
            in_use,
            "in_use differs from the permits held"
        );
        assert_eq!(u64::from(sem.available()), u64::from(max) - in_use);

        // LeaseSemaphore: between the leases that surely hold a slot and the
        // leases that may.
        let t = Nanos::new(now);
        let live = guards
            .iter()
            .map(|(_, h)| h)
            .chain(kept.iter())
            .filter(|h| !h.expired(now));
        let (may, sure) = live.fold((0u32, 0u32), |(m, s), h| (m + 1, s + u32::from(!h.exposed)));
        let in_use = leases.in_use(t);
        assert!(in_use <= LEASES);
        assert_eq!(in_use + leases.available(t), LEASES);
        assert!(
            in_use <= may,
            "{in_use} leases in use, at most {may} can be"
        );
        assert!(in_use >= sure, "{in_use} leases in use, {sure} surely held");
    }
});

/// Lease deadlines at or past 2^63 ns mean for ever.
fn clamp(deadline: u64) -> u64 {
    if deadline >= 1 << 63 { u64::MAX } else { deadline }
}

/// `try_acquire(n)` against the model: `TooMany`, `Full` with the exact
/// counts, or a permit of `n`.
fn acquire<'a>(sem: &'a Semaphore, n: u32, max: u32, held: &mut Vec<Permit<'a>>, forgotten: u64) {
    let in_use = held.iter().map(|p| u64::from(p.count())).sum::<u64>() + forgotten;
    let want = if n > max {
        Err(AcquireError::TooMany { requested: n, max })
    } else if in_use + u64::from(n) > u64::from(max) {
        let in_use = u32::try_from(in_use).expect("in_use <= max");
        Err(AcquireError::Full {
            in_use,
            max,
            requested: n,
        })
    } else {
        Ok(n)
    };
    let got = sem.try_acquire(n);
    assert_eq!(got.as_ref().map(Permit::count).map_err(|e| *e), want);
    if let Ok(p) = got {
        held.push(p);
    }
}

/// `release(n)` against the model: only forgotten permits can be given back.
fn release(sem: &Semaphore, n: u32, forgotten: &mut u64) {
    let got = sem.release(n);
    if u64::from(n) <= *forgotten {
        assert_eq!(got, Ok(()));
        *forgotten -= u64::from(n);
    } else {
        let forgotten = u32::try_from(*forgotten).expect("forgotten <= max");
        assert_eq!(
            got,
            Err(ReleaseError {
                requested: n,
                forgotten
            })
        );
    }
}
