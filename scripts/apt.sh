# shellcheck shell=bash
# Sourced by the set-up scripts that install Debian packages into the system with apt-get
# (scripts/emacs.sh, scripts/postgres.sh). Such a script defines
#   missing        empty when everything is usable, else one line per missing piece
#   packages_for   the Debian packages to install for what `missing` printed (its $1), one a line
#   versions       what is installed, for the log
# and ends with `apt_main "$@"`. Not scripts/vscode-server.sh (it waits for another apt's lock
# and updates only when an install fails) nor scripts/neovim.sh (a private apt state, unpacked
# into .cache/).

log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# apt_install WHAT PACKAGE...: install the packages with apt-get, as root or through sudo; WHAT
# (what `missing` said) names what they are for in the errors. `apt-get update` runs first only
# when apt-cache does not know the packages.
apt_install() {
    local what=$1
    shift
    command -v apt-get >/dev/null || die "apt-get is needed to install: $what"
    local -a sudo=()
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null || die "root or sudo is needed to install: $what"
        sudo=(sudo)
    fi
    # A fresh container has no package lists: apt-cache knows nothing until apt-get update.
    if ! apt-cache show "$@" >/dev/null 2>&1; then
        log "apt-get update"
        "${sudo[@]}" apt-get -q update </dev/null >&2 || die "apt-get update failed"
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get -q install -y --no-install-recommends \
        "$@" </dev/null >&2 || die "apt-get install $* failed"
}

apt_cmd_install() {
    local absent
    absent=$(missing)
    if [[ -z $absent ]]; then
        log "cached ($(versions))"
        return 0
    fi
    local -a packages
    mapfile -t packages < <(packages_for "$absent")
    apt_install "$absent" "${packages[@]}"
    absent=$(missing)
    [[ -z $absent ]] || die "still missing after the install: $absent"
    log "installed ($(versions))"
}

apt_cmd_check() {
    local absent
    absent=$(missing)
    if [[ -n $absent ]]; then
        printf 'missing: %s\n' "$absent" >&2
        exit 1
    fi
}

# apt_main "$@": `install` installs what is missing (nothing when all is there); `check` exits 0
# when nothing is missing, else says what is.
apt_main() {
    case ${1:-} in
    install) apt_cmd_install ;;
    check) apt_cmd_check ;;
    *)
        echo "usage: $0 install | check" >&2
        exit 2
        ;;
    esac
}
