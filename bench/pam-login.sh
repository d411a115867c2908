#!/usr/bin/env bash
# Login-path benchmark: pam_start_confdir + pam_acct_mgmt + pam_end through
# the real libpam, side by side for
#   pam_permit (baseline), pam_hosthog (1,000-reservation table, allowed and
#   refused), pam_access (100 rules), pam_time, and pam_exec running a small
#   Python account script.
# Every stack lives in a private confdir under a fresh temporary directory;
# nothing under /etc is read or changed (pam_start_confdir). Run as root:
# pam_hosthog only trusts a root-owned table.
#
#   bench/pam-login.sh [ROUNDS] [CALLS] [LOGINS]
#                      (defaults: 10 rounds x 500 calls; 300 cold logins per stack)
#
# Prints markdown tables (the figures in docs/benchmarks.md come from them):
#   1. cold: one fresh process per login, as sshd and login do (every module
#      loaded once per login), stacks interleaved login by login, every
#      answer asserted (allowed 0 or refused 6); the headline figures;
#   2. warm: the modules stay loaded in one process (a display manager).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-10}
calls=${2:-500}
logins=${3:-300}
exec_calls=$(( calls / 50 > 2 ? calls / 50 : 2 ))

if [ "$(id -u)" -ne 0 ]; then
    echo "pam-login.sh: run as root: pam_hosthog only trusts a root-owned table" >&2
    exit 2
fi

cargo build --release --quiet -p pam_hosthog --lib --example pam_login_bench
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
module="$target_dir/release/libpam_hosthog.so"
harness="$target_dir/release/examples/pam_login_bench"

work=$(mktemp -d /tmp/hosthog-bench.XXXXXX)   # 0700, root-owned
trap 'rm -rf "$work"' EXIT
# The cold logins run in a C process (bench/pam-once.c), as in sshd and
# login: a Rust process has libgcc_s loaded already, they have not.
if ! command -v gcc >/dev/null || [ ! -e /usr/include/security/pam_appl.h ]; then
    echo "pam-login.sh: needs gcc and the PAM headers (apt-get install gcc libpam0g-dev)" >&2
    exit 2
fi
gcc -O2 -Wall -Wextra -o "$work/pam-once" bench/pam-once.c -lpam
mkdir -m 0755 "$work/pam.d" "$work/state"
user=nobody                                    # exists everywhere; pam_access looks it up

# pam_hosthog: 1,000 reservations; one active now, held by $user.
"$harness" table "$work/state" 1000 "$user" >&2
chmod 0644 "$work/state/table"
# ... and a user who is refused by it (exercises the message path).
refused=daemon

# pam_access: 100 rules that do not match, then one that allows.
{
    for i in $(seq 1 99); do echo "- : user$i : ALL"; done
    echo "+ : ALL : ALL"
} > "$work/access.conf"

# pam_time: a handful of rules, none restricting $user now.
cat > "$work/time.conf" <<CONF
login ; * ; user1 ; !Wk0000-2400
sshd ; * ; user2|user3 ; Al0800-1800
bench ; * ; !$user ; Al0000-2400
CONF

# pam_exec: the Python account check some sites run today.
cat > "$work/account-check.py" <<'PY'
#!/usr/bin/python3
import json, os, sys, time
user = os.environ.get("PAM_USER", "")
with open(os.path.join(os.path.dirname(__file__), "reservations.json")) as f:
    reservations = json.load(f)
now = time.time()
for r in reservations:
    if r["start"] <= now < r["end"] and r["exclusive"] and user not in [r["owner"], *r["with"]]:
        print(f"host reserved by {r['owner']}", file=sys.stderr)
        sys.exit(1)
sys.exit(0)
PY
chmod 0755 "$work/account-check.py"
python3 - "$work/reservations.json" "$user" <<'PY'
import json, sys, time
now = time.time()
rs = [{"owner": sys.argv[2], "with": [], "start": now - 600, "end": now + 10800, "exclusive": True}]
rs += [{"owner": "alice", "with": ["bob"], "start": now + 10800 + i * 1800,
        "end": now + 12600 + i * 1800, "exclusive": i % 3 == 0} for i in range(1, 1000)]
json.dump(rs, open(sys.argv[1], "w"))
PY

stack() { printf '%s\naccount required pam_permit.so\n' "$2" > "$work/pam.d/$1"; }
printf 'account required pam_permit.so\n' > "$work/pam.d/permit"
stack hosthog      "account required $module table=$work/state/table"
stack access       "account required pam_access.so accessfile=$work/access.conf"
stack access-nodefgroup "account required pam_access.so nodefgroup accessfile=$work/access.conf"
stack time         "account required pam_time.so conffile=$work/time.conf"
stack exec-python  "account required pam_exec.so quiet /usr/bin/python3 $work/account-check.py"
# pam_hosthog loaded but told to do nothing (services= names no real
# service): what loading the module alone costs.
stack hosthog-load-only "account required $module table=$work/state/table services=none-such"
for f in "$work/pam.d"/*; do echo "== ${f##*/}: $(head -1 "$f")" >&2; done

echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r), libpam $(dpkg-query -W -f='${Version}' libpam0g 2>/dev/null || echo '?')" >&2
echo "## cold: a fresh process per login ($logins logins per stack, interleaved)"
PAM_LOGIN_BENCH_ONCE="$work/pam-once" "$harness" cold "$work/pam.d" "$logins" \
    "pam_permit:permit:$user:0" \
    "pam_time:time:$user:0" \
    "pam_access nodefgroup:access-nodefgroup:$user:0" \
    "pam_hosthog, loaded only:hosthog-load-only:$user:0" \
    "pam_hosthog, allowed:hosthog:$user:0" \
    "pam_hosthog, refused:hosthog:$refused:6"
echo
echo "## warm, allowed user ($user): modules stay loaded in one process"
"$harness" run "$work/pam.d" "$user" "$rounds" "$calls" \
    permit:0 hosthog:0 access:0 access-nodefgroup:0 time:0 "exec-python:0:$exec_calls"
echo
echo "## warm, refused user ($refused): pam_hosthog's refusal path (message, syslog)"
"$harness" run "$work/pam.d" "$refused" "$rounds" "$calls" permit:0 hosthog:6
