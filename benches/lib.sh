# Shared by the benchmark scripts that load a server with wrk: `source` it.

die() { echo "run.sh: $*" >&2; exit 2; }

# wrk is in Debian's packages; install it when we may, otherwise say how.
ensure_wrk() {
    if ! command -v wrk >/dev/null 2>&1; then
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
            echo "wrk is missing; installing it with apt-get" >&2
            apt-get update -qq && apt-get install -y -qq wrk >/dev/null
        else
            die "wrk is not installed (and not root with apt-get): install it, e.g. 'sudo apt-get install wrk'"
        fi
    fi
    command -v wrk >/dev/null 2>&1 || die "wrk is still not installed"
}
