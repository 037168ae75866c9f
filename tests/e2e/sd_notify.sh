#!/bin/sh
# systemd's notify protocol against a fake NOTIFY_SOCKET (sd_notify.py).
. "$TESTS_SRCDIR/lib.sh"
command -v python3 >/dev/null || t_skip_all "python3 not installed"
export TESTS_SRCDIR TOP_SRCDIR TOP_BUILDDIR T_WAIT_S
exec python3 "$TESTS_SRCDIR/e2e/sd_notify.py"
