/* main.c -- the seed application: waituntil with the seed's handlers.
 *   ./seed -p . -c seed.conf        (serves on var/seed.sock)
 *   ./seed -p . -c seed.conf -t     (checks the conf and the schema) */
#include "seed.h"

int main(int argc, char **argv)
{
    return waituntil_main(argc, argv, seed_handlers, seed_nhandlers);
}
