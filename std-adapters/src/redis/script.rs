//! The Lua script's arguments and reply, apart from any connection: what a
//! member sends, and how the client turns the states the script saw into the
//! core's exact [`Decision`]s. Pure functions, tested without a server.

use redis::Value;
use tollgate_core::window::{FixedRule, SLIDING_INDEX_MASK, SlidingRule, pack_fixed, pack_sliding};
use tollgate_core::{Decision, Nanos, Snapshot, gcra};

use super::{Kind, Member, RedisRule};

/// The script (`check.lua`), loaded once per server (EVALSHA, EVAL on
/// `NOSCRIPT`).
pub(crate) const SOURCE: &str = include_str!("check.lua");

/// What the script does with the members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// All-or-nothing admission.
    Check,
    /// Give units back (every member, independently) that were charged at
    /// `charged_at` (on the clock of the call's time; `None`: at that time),
    /// as far as the charge still weighs (see [`refunded`]).
    Refund { charged_at: Option<Nanos> },
}

/// `ARGV`: the operation, the time (`None`: the server's `TIME`), when a
/// refund's units were charged (`""`: at that time), then five fields per
/// member (see `check.lua`).
pub(crate) fn args(op: Op, now: Option<Nanos>, members: &[Member<'_>]) -> Vec<String> {
    let time = |t: Option<Nanos>| t.map_or_else(String::new, |n| n.as_u64().to_string());
    let mut out = Vec::with_capacity(3 + 5 * members.len());
    let charged_at = match op {
        Op::Check => {
            out.push("check".to_owned());
            None
        }
        Op::Refund { charged_at } => {
            out.push("refund".to_owned());
            charged_at
        }
    };
    out.push(time(now));
    out.push(time(charged_at));
    for m in members {
        let cost = m.cost;
        match m.rule.kind {
            Kind::Gcra(q) => {
                // cost × T; only an over-capacity cost (refused anyway)
                // or a refund of one can saturate.
                let inc = u64::from(cost).saturating_mul(q.emission_interval().as_u64());
                out.extend([
                    "g".to_owned(),
                    cost.to_string(),
                    q.burst().get().to_string(),
                    inc.to_string(),
                    q.capacity().as_u64().to_string(),
                ]);
            }
            Kind::Fixed(r) => out.extend([
                "f".to_owned(),
                cost.to_string(),
                r.limit().to_string(),
                (r.window().as_u64() / NANOS_PER_SEC).to_string(),
                r.offset().as_u64().to_string(),
            ]),
            Kind::Sliding(r) => out.extend([
                "s".to_owned(),
                cost.to_string(),
                r.limit().to_string(),
                (r.window().as_u64() / NANOS_PER_SEC).to_string(),
                "0".to_owned(),
            ]),
        }
    }
    out
}

pub(crate) const NANOS_PER_SEC: u64 = 1_000_000_000;

/// The script's reply: the time it decided at, whether it admitted, and the
/// state each member saw (in the script's text form, `""` when absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) now: Nanos,
    pub(crate) admitted: bool,
    pub(crate) states: Vec<String>,
}

/// Why a reply could not be read (a script of another version, or not ours).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BadReply(pub(crate) String);

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Reads `{now, admitted, state...}` for `members` members.
pub(crate) fn parse_reply(v: &Value, members: usize) -> Result<Reply, BadReply> {
    let bad = || BadReply(format!("unexpected script reply {v:?}"));
    let Value::Array(items) = v else {
        return Err(bad());
    };
    if items.len() != members + 2 {
        return Err(bad());
    }
    let now = text(&items[0])
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(bad)?;
    let admitted = match &items[1] {
        Value::Int(1) => true,
        Value::Int(0) => false,
        _ => return Err(bad()),
    };
    let states = items[2..]
        .iter()
        .map(|s| text(s).ok_or_else(bad))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Reply {
        now: Nanos::new(now),
        admitted,
        states,
    })
}

/// The core's state word for a state in the script's text form (`None`:
/// unreadable). Window indexes are stored in full and packed modulo 2^k as
/// the core keeps them.
pub(crate) fn state_word(rule: &RedisRule, state: &str) -> Option<u64> {
    if state.is_empty() {
        return Some(0);
    }
    let mut f = state.split(':').map(str::parse::<u64>);
    let mut next = || f.next().and_then(Result::ok);
    match rule.kind {
        Kind::Gcra(_) => state.parse().ok(),
        Kind::Fixed(_) => {
            let (index, count) = (next()?, next()?);
            // Truncation intended: the core keeps the index modulo 2^32.
            #[allow(clippy::cast_possible_truncation)]
            let index = index as u32;
            Some(pack_fixed(index, u32::try_from(count).ok()?))
        }
        Kind::Sliding(_) => {
            let (index, prev, curr) = (next()?, next()?, next()?);
            // Masked to the core's 24 index bits first.
            let index = u32::try_from(index & SLIDING_INDEX_MASK).ok()?;
            Some(pack_sliding(
                index,
                u32::try_from(prev).ok()?,
                u32::try_from(curr).ok()?,
            ))
        }
    }
}

/// The core's decision for `cost` at `now` on `word`.
pub(crate) fn decide(rule: &RedisRule, word: u64, now: Nanos, cost: u32) -> Decision {
    match rule.kind {
        Kind::Gcra(q) => gcra::decide(&q, word, now, cost).0,
        Kind::Fixed(r) => FixedRule::decide(&r, word, now, cost).0,
        Kind::Sliding(r) => SlidingRule::decide(&r, word, now, cost).0,
    }
}

/// The read-out after refunding, at `now`, `cost` units charged at
/// `charged_at` from `word`: the script's refund, as the core's
/// `refunded_since` computes it — only what the charge still weighs. GCRA:
/// `cost × T − (now − charged_at)` back (nothing if `<= 0`; a `charged_at`
/// after `now` counts as no time elapsed), never below `now`. Fixed window:
/// the units back only while `now` is in the charge's window (`(t + offset)
/// / W`), sliding window likewise (`t / W`), and not from a stored window
/// later than now's; else nothing. With `charged_at == now` this is the
/// plain refund (outside a later window).
pub(crate) fn refunded(
    rule: &RedisRule,
    word: u64,
    charged_at: Nanos,
    now: Nanos,
    cost: u32,
) -> Snapshot {
    match rule.kind {
        Kind::Gcra(q) => {
            let after = gcra::refunded_since(&q, word, charged_at, now, cost).unwrap_or(word);
            gcra::snapshot(&q, after, now)
        }
        Kind::Fixed(r) => {
            let after = r.refunded_since(word, charged_at, now, cost);
            r.snapshot(after.unwrap_or(word), now)
        }
        Kind::Sliding(r) => {
            let after = r.refunded_since(word, charged_at, now, cost);
            r.snapshot(after.unwrap_or(word), now)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::num::NonZeroU32;
    use tollgate_core::Quota;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    /// The script's clock-back tolerance is the core's, so a stored window
    /// far ahead of now's reads as over on both sides.
    #[test]
    fn the_script_steps_back_as_far_as_the_core() {
        use tollgate_core::window::{FIXED_MAX_BACK, SLIDING_MAX_BACK};
        assert!(SOURCE.contains(&format!("local FIXED_MAX_BACK = {FIXED_MAX_BACK}\n")));
        assert!(SOURCE.contains(&format!("local SLIDING_MAX_BACK = {SLIDING_MAX_BACK}\n")));
    }

    #[test]
    fn args_carry_the_core_arithmetic() {
        let q = Quota::new(nz(3), core::time::Duration::from_secs(10)).unwrap();
        let fixed = FixedRule::new(nz(5), Nanos::from_secs(60), Nanos::from_secs(7)).unwrap();
        let sliding = SlidingRule::new(nz(9), Nanos::from_secs(3_600)).unwrap();
        let members = [
            Member::new("a", RedisRule::gcra(q), 2),
            Member::new("b", RedisRule::fixed(fixed).unwrap(), 1),
            Member::new("c", RedisRule::sliding(sliding).unwrap(), 4),
        ];
        let a = args(Op::Check, Some(Nanos::new(42)), &members);
        assert_eq!(
            a,
            [
                "check",
                "42",
                "",
                "g",
                "2",
                "3",
                "6666666668", // 2 × ⌈10 s / 3⌉
                "10000000002",
                "f",
                "1",
                "5",
                "60",
                "7000000000",
                "s",
                "4",
                "9",
                "3600",
                "0"
            ]
        );
        let refund = |charged_at| args(Op::Refund { charged_at }, None, &members[..1]);
        assert_eq!(refund(None)[..3], ["refund", "", ""]);
        assert_eq!(refund(Some(Nanos::new(7)))[..3], ["refund", "", "7"]);
    }

    /// The mirror gives back only what a charge still weighs, as the
    /// in-process rule does; at the charge's own time, the plain refund.
    #[test]
    fn refunds_give_back_what_the_charge_still_weighs() {
        let s = Nanos::from_secs;
        // GCRA, T = 1 s, burst 5: 4 units charged at 10 s (TAT 14 s), two
        // of them to be refunded.
        let g = RedisRule::gcra(Quota::per_second(nz(1)).with_burst(nz(5)));
        let ahead = |charged_at, now: Nanos, cost| {
            refunded(&g, 14_000_000_000, charged_at, now, cost)
                .reset_after
                .as_u64()
        };
        let ms = Nanos::from_millis;
        // At once: 2 s back (TAT 12 s).
        assert_eq!(ahead(s(10), s(10), 2), 2_000_000_000);
        // 0.5 s late: 1.5 s back (TAT 12.5 s, 2 s ahead of 10.5 s as well).
        assert_eq!(ahead(s(10), ms(10_500), 2), 2_000_000_000);
        // 2.5 s late: the bucket regenerated the 2 s itself; nothing back
        // (refunded as of now it would be TAT 12 s: 0.5 s ahead).
        assert_eq!(ahead(s(10), ms(12_500), 2), 1_500_000_000);
        // Charged "after" now (a clock stepping back): no time elapsed.
        assert_eq!(ahead(s(11), s(10), 2), 2_000_000_000);
        assert_eq!(ahead(s(10), s(10), 0), 4_000_000_000);
        // Fixed window of 60 s, offset 7 s: windows [53 s, 113 s), ...
        let f = RedisRule::fixed(FixedRule::new(nz(5), s(60), s(7)).unwrap()).unwrap();
        let word = pack_fixed(1, 3); // 3 counted in window 1
        assert_eq!(refunded(&f, word, s(53), s(112), 1).remaining, 3);
        assert_eq!(refunded(&f, word, s(52), s(112), 1).remaining, 2);
        // Sliding window of 60 s (no offset): windows [60 s, 120 s), ...
        let sl = RedisRule::sliding(SlidingRule::new(nz(5), s(60)).unwrap()).unwrap();
        let word = pack_sliding(1, 0, 3);
        assert_eq!(refunded(&sl, word, s(60), s(119), 1).remaining, 3);
        assert_eq!(refunded(&sl, word, s(59), s(119), 1).remaining, 2);
    }

    #[test]
    fn replies_are_read_or_refused() {
        let ok = Value::Array(vec![
            Value::BulkString(b"1714305600000000123".to_vec()),
            Value::Int(0),
            Value::BulkString(b"".to_vec()),
            Value::BulkString(b"7:3".to_vec()),
        ]);
        assert_eq!(
            parse_reply(&ok, 2),
            Ok(Reply {
                now: Nanos::new(1_714_305_600_000_000_123),
                admitted: false,
                states: vec![String::new(), "7:3".into()],
            })
        );
        assert!(parse_reply(&ok, 3).is_err());
        assert!(parse_reply(&Value::Int(1), 0).is_err());
        assert!(parse_reply(&Value::Array(vec![Value::Int(5), Value::Int(2)]), 0).is_err());
    }

    #[test]
    fn states_map_to_core_words() {
        let g = RedisRule::gcra(Quota::per_second(nz(1)));
        let f = RedisRule::fixed(FixedRule::new(nz(1), Nanos::from_secs(1), Nanos::ZERO).unwrap())
            .unwrap();
        let s = RedisRule::sliding(SlidingRule::new(nz(1), Nanos::from_secs(1)).unwrap()).unwrap();
        assert_eq!(state_word(&g, ""), Some(0));
        assert_eq!(state_word(&g, "18446744073709551615"), Some(u64::MAX));
        assert_eq!(state_word(&g, "x"), None);
        assert_eq!(state_word(&f, "7:3"), Some(pack_fixed(7, 3)));
        // Full indexes are packed modulo 2^32 / 2^24, as the core keeps them.
        assert_eq!(state_word(&f, "4294967301:2"), Some(pack_fixed(5, 2)));
        assert_eq!(state_word(&s, "16777217:4:5"), Some(pack_sliding(1, 4, 5)));
        assert_eq!(state_word(&s, "1:4"), None);
    }
}
