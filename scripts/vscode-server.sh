#!/usr/bin/env bash
# Install and cache a real VS Code workbench for the end-to-end tests of the extension.
#
#   scripts/vscode-server.sh install   install what is missing (idempotent, cached)
#   scripts/vscode-server.sh path      print the code-server launcher
#
# What it installs:
#   1. Debian packages: chromium (the browser playwright-core drives: Playwright's own browser
#      download is impossible here), ripgrep (code-server's search; its npm wrapper would
#      download a binary), libkrb5-dev + pkg-config + build-essential (code-server's kerberos
#      dependency builds from source). `apt-get update` runs only if a package is not found.
#   2. tests/workbench/node_modules from the committed tests/workbench/package-lock.json:
#      code-server 4.100.3 (the last for Node 20; VS Code 1.100.3's workbench) and
#      playwright-core. Skipped while the lockfile is unchanged since the last install
#      (a stamp under .cache/, as ./dev does) and code-server runs `--version`.
# Facts that bite (see ARCHITECTURE.md): as root npm must run install scripts with
# npm_config_unsafe_perm=true; node-pty's install asks unless npm_config_yes=true;
# @vscode/ripgrep downloads its binary unless its cache tarball already holds one, so the
# script seeds that cache with Debian's `rg`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=$ROOT/tests/workbench
CACHE=$ROOT/.cache
STAMP=$CACHE/vscode-server.stamp
CODE_SERVER=$DIR/node_modules/.bin/code-server
CODE_SERVER_VERSION=4.100.3
APT_PACKAGES=(chromium ripgrep libkrb5-dev pkg-config build-essential)

log() { printf 'vscode-server.sh: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

lock_sum() { sha256sum <"$DIR/package-lock.json"; }

installed() {
    [[ -f $STAMP && -f $DIR/package-lock.json ]] && [[ "$(lock_sum)" == "$(cat "$STAMP")" ]] &&
        [[ -x $CODE_SERVER ]] && "$CODE_SERVER" --version 2>/dev/null | grep -q "^$CODE_SERVER_VERSION "
}

apt_install() {
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    local sudo=()
    [[ $(id -u) == 0 ]] || sudo=(sudo)
    # Another apt (a developer's, a parallel set-up) may hold the lock: wait for it.
    sudo+=(env DEBIAN_FRONTEND=noninteractive)
    local wait=(-o DPkg::Lock::Timeout=900)
    log "installing Debian packages: ${missing[*]}"
    # A stale package index is the usual reason a package is not found: update once, then retry.
    if ! "${sudo[@]}" apt-get "${wait[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
        "${sudo[@]}" apt-get "${wait[@]}" update -qq
        "${sudo[@]}" apt-get "${wait[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# @vscode/ripgrep's postinstall (a dependency of code-server's own lib/vscode, installed by
# code-server's postinstall) uses $TMPDIR/vscode-ripgrep-cache-<its version>/ripgrep-<tag>-<target>.tar.gz
# before downloading from the internet: put Debian's rg there, named for the version and tag
# that code-server pins (read from its shrinkwrap and from the wrapper's postinstall).
seed_ripgrep_cache() {
    local tmp=${TMPDIR:-/tmp} rg wrapper tag stage target=x86_64-unknown-linux-musl
    local vscode=$DIR/node_modules/code-server/lib/vscode
    rg=$(command -v rg) || die "ripgrep is not installed"
    wrapper=$(node -e '
        const lock = require(process.argv[1]);
        console.log(lock.packages["node_modules/@vscode/ripgrep"].version);
    ' "$vscode/npm-shrinkwrap.json") || die "no @vscode/ripgrep in code-server's shrinkwrap"
    # The tag is a constant in the wrapper's postinstall, which is not on disk yet: 1.15.x
    # fetches v13.0.0-10 (v13.0.0-4 on some architectures); seed both (1.7 MB each).
    stage=$(mktemp -d)
    cp "$rg" "$stage/rg"
    mkdir -p "$tmp/vscode-ripgrep-cache-$wrapper"
    for tag in v13.0.0-10 v13.0.0-4; do
        tar -czf "$tmp/vscode-ripgrep-cache-$wrapper/ripgrep-$tag-$target.tar.gz" -C "$stage" rg
    done
    rm -rf "$stage"
}

install() {
    apt_install
    if installed; then
        log "code-server $CODE_SERVER_VERSION and playwright-core already installed"
        return 0
    fi
    mkdir -p "$CACHE"
    export npm_config_unsafe_perm=true npm_config_yes=true
    if [[ ! -f $DIR/package-lock.json ]]; then
        log "resolving tests/workbench/package-lock.json"
        (cd "$DIR" && npm install --package-lock-only --ignore-scripts --no-audit --no-fund --loglevel=error)
    fi
    log "installing code-server $CODE_SERVER_VERSION and playwright-core (npm ci in tests/workbench)"
    # Unpack first, seed ripgrep's download cache from what was unpacked, then run the install
    # scripts (code-server's postinstall installs VS Code's own modules and builds kerberos).
    (cd "$DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    seed_ripgrep_cache
    (cd "$DIR" && npm rebuild --no-audit --no-fund --loglevel=error)
    "$CODE_SERVER" --version | grep -q "^$CODE_SERVER_VERSION " ||
        die "code-server did not install: $("$CODE_SERVER" --version 2>&1 | head -3)"
    lock_sum >"$STAMP"
    log "installed code-server $("$CODE_SERVER" --version | head -1)"
}

case ${1:-} in
install) install ;;
path) echo "$CODE_SERVER" ;;
*)
    sed -n '4,5p' "$0"
    exit 2
    ;;
esac
