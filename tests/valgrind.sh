#!/bin/sh
# valgrind.sh PROGRAM [ARGS]: run one Check program under memcheck; any
# error or definite/indirect leak fails it (exit 1).  CK_FORK=no is set by
# the caller so valgrind sees the tests themselves, not a forking parent.
exec valgrind -q --error-exitcode=1 --leak-check=full \
    --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
    --track-origins=yes "$@"
