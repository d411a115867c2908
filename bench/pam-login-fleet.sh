#!/usr/bin/env bash
# The login path on a fleet host against a plain host's, side by side: the
# same 1,000 reservations, once in a table written by hand (as
# bench/pam-login.sh makes it) and once in the table of a live fleet host
# (a real PostgreSQL, hosthog-server and hosthogd following the calendar,
# left running, long-polling, while the logins are timed:
# hosthogd/benches/fleet_login_table.rs). Each login is a fresh process
# (bench/pam-once.c) timing pam_start_confdir + pam_acct_mgmt + pam_end;
# the stacks take turns login by login; every answer is asserted (0
# allowed, 6 refused). Nothing under /etc is read or changed.
#
#   bench/pam-login-fleet.sh [LOGINS]     (default: 300 logins per stack)
#
# Run as root: pam_hosthog only trusts a root-owned table, and the fleet's
# PostgreSQL runs as the postgres user (postgresql-15 installed, as for the
# fleet tests).
set -euo pipefail
cd "$(dirname "$0")/.."

logins=${1:-300}
if [ "$(id -u)" -ne 0 ]; then
    echo "pam-login-fleet.sh: run as root" >&2
    exit 2
fi
if ! command -v gcc >/dev/null || [ ! -e /usr/include/security/pam_appl.h ]; then
    echo "pam-login-fleet.sh: needs gcc and the PAM headers (apt-get install gcc libpam0g-dev)" >&2
    exit 2
fi

cargo build --release --quiet -p pam_hosthog --lib --example pam_login_bench
# The fleet's processes, as installed: the release builds.
cargo build --release --quiet -p hosthog-server -p hosthogd -p hosthog-cli --bins
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
module="$target_dir/release/libpam_hosthog.so"
harness="$target_dir/release/examples/pam_login_bench"

work=$(mktemp -d /tmp/hosthog-bench.XXXXXX)   # 0700, root-owned
fleet_pid=
fleet_in=
# Closes the fleet's stdin (it then stops every process it started) and
# returns its exit status.
stop_fleet() {
    local status=0
    if [ -n "$fleet_in" ]; then
        exec {fleet_in}>&-
        fleet_in=
    fi
    if [ -n "$fleet_pid" ]; then
        wait "$fleet_pid" || status=$?
        fleet_pid=
    fi
    return "$status"
}
trap 'stop_fleet || true; rm -rf "$work"' EXIT
gcc -O2 -Wall -Wextra -o "$work/pam-once" bench/pam-once.c -lpam
mkdir -m 0755 "$work/pam.d" "$work/state"
user=nobody     # holds the reservation in force now
refused=daemon  # refused by it

# The plain host's table: 1,000 reservations, one in force held by $user.
"$harness" table "$work/state" 1000 "$user" >&2
chmod 0644 "$work/state/table"

# The fleet host's: the same reservations, through the calendar and
# hosthogd's sync. Its stdin is held open until the logins are done.
mkfifo "$work/fleet-in" "$work/fleet-out"
cargo bench --quiet -p hosthogd --bench fleet_login_table -- "$work/state/table" \
    < "$work/fleet-in" > "$work/fleet-out" &
fleet_pid=$!
exec {fleet_in}> "$work/fleet-in"
read -r fleet_table < "$work/fleet-out" || {
    echo "pam-login-fleet.sh: the fleet did not come up (see above)" >&2
    exit 1
}
echo "== fleet host's table: $fleet_table ($(stat -c %s "$fleet_table") bytes; plain: $(stat -c %s "$work/state/table") bytes)" >&2

stack() { printf '%s\naccount required pam_permit.so\n' "$2" > "$work/pam.d/$1"; }
printf 'account required pam_permit.so\n' > "$work/pam.d/permit"
stack plain "account required $module table=$work/state/table"
stack fleet "account required $module table=$fleet_table"

echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')" >&2
echo "## cold: a fresh process per login ($logins logins per stack, interleaved)"
PAM_LOGIN_BENCH_ONCE="$work/pam-once" "$harness" cold "$work/pam.d" "$logins" \
    "pam_permit:permit:$user:0" \
    "pam_hosthog, plain host, allowed:plain:$user:0" \
    "pam_hosthog, fleet host, allowed:fleet:$user:0" \
    "pam_hosthog, plain host, refused:plain:$refused:6" \
    "pam_hosthog, fleet host, refused:fleet:$refused:6"
# The fleet ran the whole time (else these were not a live fleet host's
# figures): still there, and it stops cleanly.
kill -0 "$fleet_pid" 2>/dev/null || {
    echo "pam-login-fleet.sh: the fleet stopped while the logins were timed" >&2
    exit 1
}
stop_fleet || {
    echo "pam-login-fleet.sh: the fleet failed (see above)" >&2
    exit 1
}
