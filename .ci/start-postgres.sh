#!/usr/bin/env bash
# Makes sure a PostgreSQL server accepts connections on 127.0.0.1:5432 with a
# superuser role root and a database test, so that the postgres store's tests
# can run with
#   CALLCAT_TEST_POSTGRES=postgres://root@127.0.0.1:5432/test?sslmode=disable
# It does only what is missing: a running server is left as it is, an
# installed but stopped cluster is started, and on a Debian machine without
# PostgreSQL it installs the server, sets trust authentication for local
# connections (fit for a test machine only), creates the role and the
# database, and starts it. It prints one line saying what it did.
set -euo pipefail

readonly host=127.0.0.1 port=5432 wait_seconds=60
log="${TMPDIR:-/tmp}/start-postgres.log"

fail() {
  echo "start-postgres: $*" >&2
  if [[ -s "$log" ]]; then
    echo "start-postgres: last lines of $log:" >&2
    tail -n 20 "$log" >&2
  fi
  exit 1
}

ready() {
  command -v pg_isready >/dev/null && pg_isready -q -h "$host" -p "$port" -t 2
}

wait_ready() {
  local deadline=$((SECONDS + wait_seconds))
  until ready; do
    ((SECONDS < deadline)) || fail "PostgreSQL is not ready on $host:$port after $wait_seconds s"
    sleep 1
  done
}

# newest_cluster prints the version of the newest installed cluster named main.
newest_cluster() {
  local dirs=(/etc/postgresql/*/main)
  [[ -d "${dirs[0]}" ]] || return 1
  printf '%s\n' "${dirs[@]}" | cut -d/ -f4 | sort -V | tail -n 1
}

# start_cluster starts cluster $1/main unless it already runs.
start_cluster() {
  if ! pg_ctlcluster "$1" main status >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$1" main start >>"$log" 2>&1 ||
      fail "pg_ctlcluster $1 main start failed"
  fi
}

# trust_local_connections lets every local role in without a password: the
# Unix socket and loopback TCP only.
trust_local_connections() {
  local hba="/etc/postgresql/$1/main/pg_hba.conf"
  cat >"$hba" <<'EOF'
# Written by .ci/start-postgres.sh for tests: no password on this machine.
local   all   all                 trust
host    all   all   127.0.0.1/32  trust
host    all   all   ::1/128       trust
EOF
}

# ensure_test_database creates the role root and the database test unless
# root can already connect to test.
ensure_test_database() {
  if psql -w -h "$host" -p "$port" -U root -d test -Atqc 'SELECT 1' >/dev/null 2>&1; then
    return 1
  fi
  local as_postgres=(runuser -u postgres -- psql -p "$port" -d postgres -v ON_ERROR_STOP=1 -Atq)
  if [[ -z "$("${as_postgres[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = 'root'" 2>>"$log")" ]]; then
    "${as_postgres[@]}" -c 'CREATE ROLE root SUPERUSER LOGIN' >>"$log" 2>&1 || fail "creating role root failed"
  fi
  if [[ -z "$("${as_postgres[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'test'" 2>>"$log")" ]]; then
    "${as_postgres[@]}" -c 'CREATE DATABASE test OWNER root' >>"$log" 2>&1 || fail "creating database test failed"
  fi
  psql -w -h "$host" -p "$port" -U root -d test -Atqc 'SELECT 1' >/dev/null 2>>"$log" ||
    fail "role root still cannot connect to database test on $host:$port"
  return 0
}

: >"$log"
if ready; then
  did="PostgreSQL already running on $host:$port"
elif version=$(newest_cluster); then
  start_cluster "$version"
  did="started cluster $version/main on $host:$port"
else
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -q && apt-get install -y -q postgresql; } >>"$log" 2>&1 || fail "installing postgresql failed"
  version=$(newest_cluster) || fail "postgresql is installed but has no cluster named main"
  trust_local_connections "$version"
  # The package may have started the cluster with its own pg_hba.conf.
  pg_ctlcluster "$version" main status >/dev/null 2>&1 &&
    { pg_ctlcluster --skip-systemctl-redirect "$version" main reload >>"$log" 2>&1 || fail "reloading cluster $version/main failed"; }
  start_cluster "$version"
  did="installed PostgreSQL $version with trust authentication and started it on $host:$port"
fi

wait_ready
if ensure_test_database; then
  did="$did; created role root and database test"
fi
echo "start-postgres: $did"
