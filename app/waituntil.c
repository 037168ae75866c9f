/*
 * waituntil.c -- the waituntil program: an application like any other
 * built on <waituntil/waituntil.h>, with this repository's handlers.
 */
#include "handlers.h"

int main(int argc, char **argv)
{
    return waituntil_main(argc, argv, app_handlers, app_nhandlers);
}
