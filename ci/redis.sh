#!/usr/bin/env bash
# The Redis backend (feature `redis`) against a real redis-server.
#
# Installs redis-server with apt-get when it is missing (Debian's package);
# the tests in tests/tests/redis_*.rs start their own servers on free ports
# of 127.0.0.1 (and stop, kill and restart them for the failover test), so
# nothing here needs a running service. With the binary present the tests
# must run (TOLLGATE_REDIS_REQUIRED=1: a test that cannot start a server
# fails); only when it cannot be installed do they skip, loudly.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ci/redis.sh: tollgate::redis against a real redis-server"
if ! command -v redis-server >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    echo "-- installing redis-server (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    # The package's service may fail to start without an init system; the
    # binary is what the tests need.
    { apt-get update -qq && apt-get install -y -qq redis-server; } >/tmp/tollgate-redis-apt.log 2>&1 ||
        echo "apt-get failed (log: /tmp/tollgate-redis-apt.log)" >&2
fi
if command -v redis-server >/dev/null 2>&1; then
    redis-server --version
    export TOLLGATE_REDIS_SERVER="$(command -v redis-server)"
    export TOLLGATE_REDIS_REQUIRED=1
else
    echo "!! redis-server is not installed and could not be: the Redis tests SKIP" >&2
fi
# (The module's unit tests -- no server: encoding, fail modes on a dead port
# -- run in ci/test.sh with every feature.)
# Against real servers: differential, concurrent clients, failover, policy.
timeout "${TOLLGATE_REDIS_TIMEOUT:-600}" \
    cargo test -p tollgate-tests --features redis --test 'redis_*' -- --test-threads 2
