#!/usr/bin/env bash
# Install the Emacs the test suite drives: Debian 12's Emacs 28.2 (emacs-nox) with eglot 1.9
# (elpa-eglot; Emacs 29+ has eglot built in).
#
#   scripts/emacs.sh install   install emacs-nox and elpa-eglot with apt-get (skipped when present)
#   scripts/emacs.sh check     exit 0 when emacs, emacsclient and eglot are usable, else say what is missing
#
# Unlike scripts/neovim.sh this installs into the system: it is the one Emacs Debian 12 ships, the
# one its users have. Needs root (or sudo) and the machine's apt sources.
set -euo pipefail

PACKAGES=(emacs-nox elpa-eglot)

log() { printf 'emacs.sh: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# Empty when everything is usable, else one line per missing piece.
missing() {
    command -v emacs >/dev/null || echo "emacs (apt-get install emacs-nox)"
    command -v emacsclient >/dev/null || echo "emacsclient (apt-get install emacs-nox)"
    if command -v emacs >/dev/null &&
        ! emacs -q --batch --eval '(require (quote eglot))' >/dev/null 2>&1; then
        # -q, not -Q: Debian's site-start puts elpa-eglot on the load-path, as it does for users.
        echo "eglot (apt-get install elpa-eglot on Emacs 28; built into Emacs 29+)"
    fi
}

cmd_install() {
    local absent
    absent=$(missing)
    if [[ -z $absent ]]; then
        log "cached ($(emacs --version | head -n 1))"
        return 0
    fi
    command -v apt-get >/dev/null || die "apt-get is needed to install: $absent"
    local -a sudo=()
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null || die "root or sudo is needed to install: $absent"
        sudo=(sudo)
    fi
    # A fresh container has no package lists: apt-cache knows nothing until apt-get update.
    if ! apt-cache show "${PACKAGES[@]}" >/dev/null 2>&1; then
        log "apt-get update"
        "${sudo[@]}" apt-get -q update </dev/null >&2 || die "apt-get update failed"
    fi
    log "apt-get install ${PACKAGES[*]}"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get -q install -y --no-install-recommends \
        "${PACKAGES[@]}" </dev/null >&2 || die "apt-get install ${PACKAGES[*]} failed"
    absent=$(missing)
    [[ -z $absent ]] || die "still missing after the install: $absent"
    log "installed $(emacs --version | head -n 1)"
}

cmd_check() {
    local absent
    absent=$(missing)
    if [[ -n $absent ]]; then
        printf 'missing: %s\n' "$absent" >&2
        exit 1
    fi
}

case ${1:-} in
install) cmd_install ;;
check) cmd_check ;;
*)
    echo "usage: $0 install | check" >&2
    exit 2
    ;;
esac
