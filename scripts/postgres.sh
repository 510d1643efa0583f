#!/usr/bin/env bash
# Install the servers the cluster tests and benchmarks run for real: Debian 12's PostgreSQL 15
# (postgresql), Redis (redis-server, for the Hocuspocus redis-extension peer in `./dev bench cluster`)
# and HAProxy (haproxy, in front of several hub nodes).
#
#   scripts/postgres.sh install   install the missing ones with apt-get (skipped when present)
#   scripts/postgres.sh check     exit 0 when all are usable, else say what is missing
#
# Like scripts/emacs.sh this installs into the system: the test suite starts its own throwaway
# PostgreSQL cluster and servers in temporary directories (tests/support/postgres.py, redis.py,
# haproxy.py), so the services Debian starts are not used. Needs root (or sudo) and the machine's
# apt sources.
set -euo pipefail

PACKAGES=(postgresql redis-server haproxy)

# shellcheck source=scripts/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

# The newest /usr/lib/postgresql/<version>/bin holding a server (Debian keeps one dir per major).
pg_bindir() {
    local dir
    dir=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/postgres' 2>/dev/null |
        sort -V | tail -n 1)
    [[ -n $dir ]] && dirname "$dir"
}

# Empty when everything is usable, else one line per missing piece.
missing() {
    local bin tool
    bin=$(pg_bindir) || true
    if [[ -z $bin ]]; then
        echo "PostgreSQL server (apt-get install postgresql)"
    else
        for tool in initdb pg_ctl pg_isready; do
            [[ -x $bin/$tool ]] || echo "$bin/$tool (apt-get install postgresql)"
        done
    fi
    command -v redis-server >/dev/null || echo "redis-server (apt-get install redis-server)"
    haproxy_bin >/dev/null || echo "haproxy (apt-get install haproxy)"
}

# haproxy lives in /usr/sbin, which a non-root PATH may lack.
haproxy_bin() {
    command -v haproxy || { [[ -x /usr/sbin/haproxy ]] && echo /usr/sbin/haproxy; }
}

# Which Debian packages `missing` asks for, for the apt-get command line. policy-rc.d may forbid
# starting their services (containers): they install all the same, and the tests never use them.
packages_for() {
    local pkg
    for pkg in "${PACKAGES[@]}"; do
        [[ $1 == *"apt-get install $pkg)"* ]] && echo "$pkg"
    done
    return 0
}

versions() {
    local bin
    bin=$(pg_bindir)
    printf '%s; %s; %s' "$("$bin/postgres" --version)" \
        "$(redis-server --version | cut -d ' ' -f 1-3)" \
        "$("$(haproxy_bin)" -v | head -n 1)"
}

apt_main "$@"
