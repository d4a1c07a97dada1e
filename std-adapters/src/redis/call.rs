//! One script call: the connection (made on first use), `EVALSHA` with
//! `EVAL` on `NOSCRIPT`, each under its timeout, and the breaker that keeps
//! callers from waiting on a Redis that just failed.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, Value};
use tollgate_core::{Clock, Nanos};

use super::script::{self, Op, Reply};
use super::{HealthEvent, Member, RedisLimiter, duration_nanos};

/// A failed script call.
pub(super) enum Failure {
    Timeout(&'static str),
    Redis(redis::RedisError),
    Reply(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Timeout(what) => write!(f, "{what} timed out"),
            Failure::Redis(e) => write!(f, "{e}"),
            Failure::Reply(m) => f.write_str(m),
        }
    }
}

impl RedisLimiter {
    /// One script call with the breaker: `None` when Redis is (or just
    /// became) unusable and the fail mode must answer.
    pub(super) async fn run(
        &self,
        op: Op,
        keys: &[String],
        members: &[Member<'_>],
        now: Option<Nanos>,
    ) -> Option<Reply> {
        let i = &self.inner;
        // Relaxed throughout the breaker: it only decides whether to try
        // Redis; no other memory is published through these words.
        if i.down_since.load(Ordering::Relaxed) != 0 {
            let t = i.clock.now().as_u64();
            let at = i.retry_at.load(Ordering::Relaxed);
            // One caller per interval tries Redis; the others do not wait.
            let next = t.saturating_add(duration_nanos(i.config.retry_interval));
            if t < at
                || i.retry_at
                    .compare_exchange(at, next, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                i.degraded.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        }
        match self.call(op, keys, members, now).await {
            Ok(reply) => {
                i.redis.fetch_add(1, Ordering::Relaxed);
                let since = i.down_since.swap(0, Ordering::Relaxed);
                if since != 0 {
                    let after =
                        Duration::from_nanos(i.clock.now().as_u64().saturating_sub(since - 1));
                    self.tell(&HealthEvent::Recovered { after });
                }
                Some(reply)
            }
            Err(e) => {
                i.failures.fetch_add(1, Ordering::Relaxed);
                if matches!(&e, Failure::Timeout(_))
                    || matches!(&e, Failure::Redis(r) if r.is_timeout())
                {
                    i.timeouts.fetch_add(1, Ordering::Relaxed);
                }
                i.degraded.fetch_add(1, Ordering::Relaxed);
                let t = i.clock.now().as_u64();
                i.retry_at.store(
                    t.saturating_add(duration_nanos(i.config.retry_interval)),
                    Ordering::Relaxed,
                );
                if i.down_since
                    .compare_exchange(0, t.saturating_add(1), Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    self.tell(&HealthEvent::Degraded {
                        mode: i.config.fail_mode,
                        error: e.to_string(),
                    });
                }
                None
            }
        }
    }

    fn tell(&self, e: &HealthEvent) {
        if let Some(f) = self.inner.on_health.get() {
            f(e);
        }
    }

    /// The connection (made on first use), then `EVALSHA`, or `EVAL` when
    /// the server does not have the script (a restart, `SCRIPT FLUSH`, a
    /// failover), each under its timeout.
    async fn call(
        &self,
        op: Op,
        keys: &[String],
        members: &[Member<'_>],
        now: Option<Nanos>,
    ) -> Result<Reply, Failure> {
        let i = &self.inner;
        let connect = i.conn.get_or_try_init(|| {
            let cfg = ConnectionManagerConfig::new()
                .set_connection_timeout(i.config.connect_timeout)
                // The crate's own limit, past ours: a slow reply is ours
                // to time out (and count).
                .set_response_timeout(i.config.timeout.saturating_mul(2))
                // One connection attempt per reconnect, no backoff of its
                // own (its sleeps start at 1 s and held every call waiting:
                // recovery took 1.5 s instead of 0.2 s); the breaker spaces
                // the attempts, one per retry interval.
                .set_number_of_retries(0);
            ConnectionManager::new_with_config(i.client.clone(), cfg)
        });
        let mut conn = tokio::time::timeout(i.config.connect_timeout, connect)
            .await
            .map_err(|_| Failure::Timeout("connecting to Redis"))?
            .map_err(Failure::Redis)?
            .clone();
        let args = script::args(op, now, members);
        let call = async {
            let evalsha = redis::cmd("EVALSHA")
                .arg(&i.sha)
                .arg(keys.len())
                .arg(keys)
                .arg(&args)
                .query_async::<Value>(&mut conn)
                .await;
            match evalsha {
                Err(e) if e.kind() == ErrorKind::NoScriptError => {
                    redis::cmd("EVAL")
                        .arg(script::SOURCE)
                        .arg(keys.len())
                        .arg(keys)
                        .arg(&args)
                        .query_async::<Value>(&mut conn)
                        .await
                }
                r => r,
            }
        };
        let value = tokio::time::timeout(i.config.timeout, call)
            .await
            .map_err(|_| Failure::Timeout("the Redis script call"))?
            .map_err(Failure::Redis)?;
        script::parse_reply(&value, members.len()).map_err(|e| Failure::Reply(e.0))
    }
}
