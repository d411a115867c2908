#!/usr/bin/env bash
# Delivery latency: from a scheduled instant (a reservation's start or end)
# to the message arriving, per channel, in a host box (a private mount
# namespace with test users; tests/src/daemon/host.rs):
#   pts write  — bob's terminal (a real pty under `script`), from the pty log;
#   tmux popup — carol's real tmux client (display-popup), from the log of
#                the terminal the client draws on;
#   desktop notification — frank's desktop session (tests/src/desktop.rs): a
#                real session bus at /run/user/UID/bus, Xvfb and the dunst
#                notification server; the time dbus-monitor saw dunst accept
#                the Notify call (its reply with the notification's id).
# Every sample asserts its message arrived (the desktop's with its exact
# text) and fails past 3 s; p99 must be under 1 s for every channel. Needs
# xvfb, dunst, libnotify-bin and dbus (scripts/setup-dev). Run as root.
#
#   bench/delivery-latency.sh [SAMPLES]     (default 10 reservations: 20 instants)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "delivery-latency.sh: run as root (test users, mount namespaces)" >&2
    exit 2
fi
export SAMPLES=${1:-10}
echo "commit $(git rev-parse --short HEAD), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
cargo build --release -p hosthogd -p hosthog-cli
cargo test --release -p hosthogd --test delivery_latency -- --ignored --nocapture 2>&1 \
    | grep -E '^(pts write|tmux popup|desktop notification)|panicked|test result'
