#!/bin/sh
# dev.sh run|check|build -- one command from a fresh Debian 12 machine:
# install the missing packages (apt), generate and run configure in build/,
# build, then `make run` (nginx + waituntil on 127.0.0.1:8080) or
# `make check` (the whole test suite).  Safe to run again: each step is
# skipped when already done.
set -eu
target=${1:-build}
case $target in run|check|build) ;; *)
    echo "usage: sh tools/dev.sh run|check|build" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."

# Build tools, the libraries we link, and what `make run`/`make check` use.
# The PostgreSQL server is only needed by the tests (tests/pg starts a
# private one); its package must not start a cluster (policy-rc.d below).
PKGS="gcc make autoconf automake libtool pkg-config libfcgi-dev libsqlite3-dev
libjansson-dev libpq-dev check nginx-light curl sqlite3 python3"
[ "$target" != check ] || PKGS="$PKGS postgresql man-db python3-prometheus-client"

missing=
for p in $PKGS; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' ||
        missing="$missing $p"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ]; then sudo=; elif command -v sudo >/dev/null; then sudo=sudo; else
        echo "dev.sh: need root (or sudo) to install:$missing" >&2; exit 1
    fi
    echo "dev.sh: installing:$missing"
    # Installing nginx or postgresql must not start a system service: we
    # run our own.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e $policy ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee $policy >/dev/null
        $sudo chmod +x $policy
        trap '$sudo rm -f $policy' EXIT
    fi
    $sudo apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends $missing
    $sudo rm -f $policy; trap - EXIT
fi

[ -x configure ] || autoreconf -fi
mkdir -p build
cd build
[ -f Makefile ] || ../configure
make -j"$(nproc)"
case $target in
run)   exec make run ;;
check) exec make -j"$(nproc)" check ;;
esac
