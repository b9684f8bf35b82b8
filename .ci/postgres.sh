# Sourced by .ci/run: installs PostgreSQL from Debian's packages if needed, starts a throwaway
# cluster on a free loopback port, and exports LLM_CACHE_TEST_POSTGRES for the storage tests.
# The cluster lives in a temporary folder and is stopped by its PID file when the shell exits.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
    echo "installing PostgreSQL from Debian's packages" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
pg_dir=$(mktemp -d /tmp/llm-cache-pg.XXXXXX)
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pg_as() {  # PostgreSQL refuses to run as root
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
[ "$(id -u)" = 0 ] && chown postgres "$pg_dir"
pg_as "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --auth=trust >/dev/null
pg_as "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w \
    -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
pg_as "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres llm_cache_test
export LLM_CACHE_TEST_POSTGRES="postgresql://postgres@127.0.0.1:$pg_port/llm_cache_test"
stop_postgres() { pg_as "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast stop >/dev/null 2>&1; rm -rf "$pg_dir"; }
trap stop_postgres EXIT
echo "PostgreSQL for the tests: $LLM_CACHE_TEST_POSTGRES" >&2
