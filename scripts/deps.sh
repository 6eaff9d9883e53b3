#!/usr/bin/env bash
# deps.sh -- install the Debian packages Conclave builds and tests with.
#
# Idempotent and silent when nothing is missing. Otherwise prints one line naming what
# it installs, runs apt-get (via sudo unless root), and runs `apt-get update` only if
# the first install attempt fails. apt's own chatter goes to a temp log, shown on failure.
set -euo pipefail

PKGS=(
    build-essential clang libclang-rt-14-dev libcmocka-dev         # compilers, libFuzzer, unit tests
    libuv1-dev libjansson-dev libhttp-parser-dev libssl-dev        # runtime libraries
    cppcheck clang-tidy clang-format hyperfine                     # lint, fmt, bench
    python3-pytest python3-requests python3-redis redis-tools curl # integration tests
    wrk etcd-server etcd-client redis-server                       # make bench: load, etcd, redis
)

missing=()
for p in "${PKGS[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
log=$(mktemp /tmp/conclave-deps.XXXXXX)
trap 'rm -f "$log"' EXIT

apt_install() {
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends -o DPkg::Lock::Timeout=120 "${missing[@]}" >>"$log" 2>&1
}

if ! apt_install; then
    "${sudo[@]}" apt-get update -q >>"$log" 2>&1 || true
    if ! apt_install; then
        echo "deps: apt-get install failed; last lines of its output:" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
fi
