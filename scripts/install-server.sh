# scripts/install --server: the fleet server on this machine. Sourced by
# scripts/install (its say, die, put, $repo, $bin_dir, $build, $changed).
#
# 1. Debian's PostgreSQL (package postgresql), its cluster running.
# 2. The system user hosthog-server; the role hosthog-server owning the
#    database hosthog, reached by peer authentication over the Unix socket
#    (root, for `hosthog-server host add` and the other admin commands, is
#    mapped to the same role: pg_ident.conf map "hosthog").
# 3. /usr/sbin/hosthog-server, its man page and systemd unit.
# 4. /etc/hosthog/server.toml if absent; `hosthog-server migrate`; the lab
#    CA (`ca init`) if there is none.
# 5. hosthog-server serving: the systemd unit where systemd runs, else a
#    plain start as the user hosthog-server with a pid file.
# Idempotent: a second run changes nothing and says so.

server_user=hosthog-server
server_db=hosthog
server_bin=/usr/sbin/hosthog-server
server_config=/etc/hosthog/server.toml
server_ca=/etc/hosthog/ca
server_run=/run/hosthog-server
server_log=/var/log/hosthog-server.log
server_url="host=/run/postgresql dbname=$server_db user=$server_user"

# Runs a command as a system user without PAM (setpriv, not su/runuser:
# no session, and pam_hosthog may be in the stacks).
as_user() {
    local user=$1; shift
    (cd / && setpriv --reuid "$user" --regid "$user" --init-groups "$@")
}

server_packages() {
    local p missing=()
    for p in postgresql util-linux curl gcc libc6-dev; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ "${#missing[@]}" -gt 0 ] || return 0
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/hosthog-install-apt.log 2>&1; then
        apt-get update -qq >>/tmp/hosthog-install-apt.log 2>&1 \
            && apt-get install -y -qq --no-install-recommends "${missing[@]}" >>/tmp/hosthog-install-apt.log 2>&1 \
            || { cat /tmp/hosthog-install-apt.log >&2; die "apt-get install ${missing[*]} failed"; }
    fi
    rm -f /tmp/hosthog-install-apt.log
    changed=1
}

# The cluster (version and name) Debian made, started; sets pg_version,
# pg_cluster and pg_etc.
server_postgres() {
    local line status
    line=$(pg_lsclusters -h 2>/dev/null | head -n 1)
    if [ -z "$line" ]; then
        pg_version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
        pg_createcluster "$pg_version" main >/dev/null
        say "created the PostgreSQL cluster $pg_version/main"
        changed=1
        line=$(pg_lsclusters -h | head -n 1)
    fi
    read -r pg_version pg_cluster _ status _ <<<"$line"
    pg_etc=/etc/postgresql/$pg_version/$pg_cluster
    if [ "$status" != online ]; then
        if [ -d /run/systemd/system ]; then
            systemctl enable --now "postgresql@$pg_version-$pg_cluster" >/dev/null 2>&1 \
                || systemctl start "postgresql@$pg_version-$pg_cluster"
        else
            pg_ctlcluster "$pg_version" "$pg_cluster" start
        fi
        say "started PostgreSQL $pg_version/$pg_cluster"
        changed=1
    fi
    local i
    for i in $(seq 1 60); do
        pg_isready -q -h /run/postgresql && return 0
        sleep 0.5
    done
    die "PostgreSQL $pg_version/$pg_cluster does not accept connections (see /var/log/postgresql/)"
}

psql_postgres() {
    as_user postgres psql -X -q -t -A -v ON_ERROR_STOP=1 "$@"
}

server_database() {
    if ! getent passwd "$server_user" >/dev/null; then
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$server_user"
        say "created the system user $server_user"
        changed=1
    fi
    if [ -z "$(psql_postgres -c "SELECT 1 FROM pg_roles WHERE rolname = '$server_user'")" ]; then
        psql_postgres -c "CREATE ROLE \"$server_user\" LOGIN"
        say "created the PostgreSQL role $server_user"
        changed=1
    fi
    if [ -z "$(psql_postgres -c "SELECT 1 FROM pg_database WHERE datname = '$server_db'")" ]; then
        psql_postgres -c "CREATE DATABASE $server_db OWNER \"$server_user\""
        say "created the database $server_db (owner $server_user)"
        changed=1
    fi
    if [ -z "$(psql_postgres -d "$server_db" -c "SELECT 1 FROM pg_extension WHERE extname = 'btree_gist'")" ]; then
        psql_postgres -d "$server_db" -c "CREATE EXTENSION btree_gist"
        say "created the extension btree_gist in $server_db"
        changed=1
    fi
    # Peer authentication: hosthog-server as itself, root as hosthog-server.
    local ident=$pg_etc/pg_ident.conf hba=$pg_etc/pg_hba.conf reload=0
    local line
    for line in "hosthog $server_user $server_user" "hosthog root $server_user"; do
        if ! grep -Eq "^${line// /[[:space:]]+}[[:space:]]*\$" "$ident"; then
            echo "$line" >>"$ident"
            say "$ident: added \"$line\""
            reload=1
        fi
    done
    line="local $server_db $server_user peer map=hosthog"
    if ! grep -Eq "^${line// /[[:space:]]+}[[:space:]]*\$" "$hba"; then
        sed -i "1i $line" "$hba"
        say "$hba: added \"$line\" (first, so it applies before the defaults)"
        reload=1
    fi
    if [ "$reload" = 1 ]; then
        pg_ctlcluster "$pg_version" "$pg_cluster" reload
        changed=1
        sleep 1
    fi
}

server_build() {
    [ "$build" = 1 ] || return 0
    local cargo
    cargo=$(command -v cargo || true)
    local as=()
    if [ -z "$cargo" ] && [ -n "${SUDO_USER:-}" ]; then
        cargo=$(getent passwd "$SUDO_USER" | cut -d: -f6)/.cargo/bin/cargo
        as=(sudo -u "$SUDO_USER" -H)
    fi
    [ -n "$cargo" ] && [ -x "$cargo" ] || cargo=${CARGO_HOME:-$HOME/.cargo}/bin/cargo
    [ -x "$cargo" ] || die "cargo not found; install Rust (https://rustup.rs) or build first and use --no-build"
    say "building (cargo build --release -p hosthog-server)"
    (cd "$repo" && "${as[@]}" "$cargo" build --release --quiet -p hosthog-server)
}

server_files() {
    local before=$changed
    changed=0
    put "$bin_dir/hosthog-server" "$server_bin" 0755
    binary_changed=$changed
    changed=$((before | changed))
    put "$repo/docs/hosthog-server.8" /usr/share/man/man8/hosthog-server.8 0644
    put "$repo/hosthog-server/systemd/hosthog-server.service" \
        /usr/lib/systemd/system/hosthog-server.service 0644
    if [ ! -e "$server_config" ]; then
        install -d -m 0755 /etc/hosthog
        printf '%s\n' \
            '# hosthog-server: see hosthog-server(8) and docs/fleet-api.md.' \
            "listen = \"$server_listen\"" \
            "ca_dir = \"$server_ca\"" \
            '' \
            '[database]' \
            '# Peer authentication over the Unix socket: the service runs as the' \
            '# user hosthog-server; root (admin commands) is mapped to the same role.' \
            "url = \"$server_url\"" >"$server_config.new"
        chmod 0644 "$server_config.new"
        mv "$server_config.new" "$server_config"
        say "wrote $server_config"
        changed=1
    else
        say "kept your $server_config"
    fi
}

server_schema() {
    local out
    out=$("$server_bin" migrate) || die "hosthog-server migrate failed (see above)"
    if [ "$out" != "the schema is up to date" ]; then
        say "migrate: $out"
        changed=1
    fi
    if [ ! -e "$server_ca/ca.pem" ]; then
        local names=("${server_names[@]}")
        if [ "${#names[@]}" -eq 0 ]; then
            names=("$(hostname -f 2>/dev/null || hostname)" localhost 127.0.0.1)
            [ "$(hostname)" = "${names[0]}" ] || names+=("$(hostname)")
        fi
        local args=() n
        for n in "${names[@]}"; do args+=(--name "$n"); done
        "$server_bin" ca init "${args[@]}" | sed 's/^/install: ca init: /'
        say "made the lab CA in $server_ca; the server's certificate names: ${names[*]}"
        changed=1
    elif [ "${#server_names[@]}" -gt 0 ]; then
        say "kept the CA in $server_ca (--name applies only when it is made)"
    fi
}

# A running plain `serve` of ours: its pid, or nothing.
server_pid() {
    local pid
    pid=$(cat "$server_run/hosthog-server.pid" 2>/dev/null) || return 0
    [ -n "$pid" ] || return 0
    # A binary replaced under it shows as "PATH (deleted)".
    case "$(readlink "/proc/$pid/exe" 2>/dev/null)" in
        "$server_bin" | "$server_bin (deleted)") echo "$pid" ;;
    esac
    return 0
}

server_start() {
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
        if ! systemctl is-enabled --quiet hosthog-server.service 2>/dev/null \
            || ! systemctl is-active --quiet hosthog-server.service; then
            systemctl enable --now hosthog-server.service
            say "enabled and started hosthog-server.service"
            changed=1
        elif [ "$binary_changed" = 1 ]; then
            systemctl restart hosthog-server.service
            say "restarted hosthog-server.service (new binary)"
        fi
        return 0
    fi
    local pid
    pid=$(server_pid)
    # Running, and the binary it runs is the one installed: nothing to do.
    if [ -n "$pid" ] && [ "$binary_changed" = 0 ] \
        && [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$server_bin" ]; then
        return 0
    fi
    if [ -n "$pid" ]; then
        kill "$pid"
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
        say "stopped hosthog-server (pid $pid) for the new binary"
    fi
    # What systemd's LoadCredential= hands the unit: the CA certificate, the
    # server's certificate and key and server.toml, readable by the service
    # alone (the CA's key stays root's).
    local creds=$server_run/credentials f
    install -d -m 0700 -o "$server_user" -g "$server_user" "$server_run" "$creds"
    for f in ca.pem server.pem server.key; do
        install -m 0400 -o "$server_user" -g "$server_user" "$server_ca/$f" "$creds/$f"
    done
    install -m 0400 -o "$server_user" -g "$server_user" "$server_config" "$creds/server.toml"
    touch "$server_log"
    chown "$server_user:$server_user" "$server_log"
    chmod 0640 "$server_log"
    local lines
    lines=$(wc -l <"$server_log")
    # A long-poll per host: many more descriptors than the default 1024.
    (
        ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
        cd /
        exec setsid setpriv --reuid "$server_user" --regid "$server_user" --init-groups \
            "$server_bin" --config "$creds/server.toml" --ca-dir "$creds" serve \
            </dev/null >>"$server_log" 2>&1
    ) &
    pid=$!
    echo "$pid" >"$server_run/hosthog-server.pid"
    local i
    for i in $(seq 1 50); do
        # Only what this start logged.
        tail -n +"$((lines + 1))" "$server_log" | grep -q "listening on https://" && break
        kill -0 "$pid" 2>/dev/null || { tail -n +"$((lines + 1))" "$server_log" >&2; die "hosthog-server exited (log $server_log)"; }
        sleep 0.1
    done
    tail -n +"$((lines + 1))" "$server_log" | grep -q "listening on https://" \
        || die "hosthog-server (pid $pid) did not start listening in 5 s (log $server_log)"
    say "systemd is not running here: started hosthog-server (pid $pid, log $server_log);"
    say "start it the same way after a reboot: scripts/install --server"
    changed=1
}

do_install_server() {
    command -v apt-get >/dev/null || die "--server needs Debian's packages (apt-get)"
    server_packages
    server_postgres
    server_database
    server_build
    server_files
    server_schema
    server_start
    local port=${server_listen##*:} name
    name=$(hostname -f 2>/dev/null || hostname)
    [ "${#server_names[@]}" -eq 0 ] || name=${server_names[0]}
    if [ "$changed" = 0 ]; then
        say "the fleet server was already set up and running: nothing changed"
    fi
    cat <<EOF
install: the fleet server: https://$name:$port (CA certificate $server_ca/ca.pem)
install: for each host, here:   hosthog-server host add HOST
install:   then copy HOST.bundle.pem (written in the current directory) to HOST and run there:
install:   scripts/install --join https://$name:$port --bundle /path/to/HOST.bundle.pem
install: a token for the people's API:   hosthog-server token add USER
install: fleet admins:   hosthog-server admin add USER
EOF
}
