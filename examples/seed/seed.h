/* seed.h -- the seed application's handlers (handlers.c). */
#ifndef SEED_H
#define SEED_H

#include <waituntil/waituntil.h>

extern const web_handler_def seed_handlers[];
extern const size_t seed_nhandlers;

#endif
