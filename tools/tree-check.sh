#!/bin/sh
# tree-check.sh SRCDIR BUILDDIR NAME CFLAGS LDFLAGS
# Configure (once) and build a sanitizer/valgrind tree BUILDDIR/NAME from
# SRCDIR, then run the same `make check` there.  Fails on any report: the
# sanitizers abort the failing test, valgrind exits 1 through tests/valgrind.sh.
set -eu
src=$1 top=$2 name=$3 cflags=$4 ldflags=$5
if [ "$src" = "$top" ]; then
    echo "make check-${name#san-}: needs an out-of-tree build (tools/dev.sh makes build/)" >&2
    exit 1
fi
dir=$top/$name
mkdir -p "$dir"
cd "$dir"
if [ ! -f Makefile ]; then
    "$src/configure" -q --disable-shared CC="${CC:-cc}" CFLAGS="$cflags" LDFLAGS="$ldflags"
fi
jobs=$(nproc 2>/dev/null || echo 2)
make -s -j"$jobs"
case $name in
san-asan)
    ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:strict_string_checks=1
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
    WU_SANITIZER=asan
    export ASAN_OPTIONS UBSAN_OPTIONS WU_SANITIZER
    exec make -s check ;;
san-tsan)
    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
    WU_SANITIZER=tsan
    export TSAN_OPTIONS WU_SANITIZER
    # gcc 12's TSan cannot map its shadow memory under high-entropy ASLR.
    exec setarch "$(uname -m)" -R make -s check ;;
san-valgrind)
    CK_FORK=no WU_SANITIZER=valgrind
    export CK_FORK WU_SANITIZER
    exec make -s check LOG_COMPILER="$src/tests/valgrind.sh" ;;
*)
    echo "tree-check.sh: unknown tree $name" >&2; exit 2 ;;
esac
