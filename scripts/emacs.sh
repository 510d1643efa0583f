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

# shellcheck source=scripts/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

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

# Both, whatever is missing: apt-get leaves one already installed as it is.
packages_for() { printf '%s\n' "${PACKAGES[@]}"; }

versions() { emacs --version | head -n 1; }

apt_main "$@"
