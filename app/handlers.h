/* handlers.h -- the waituntil program's own handlers (handlers.c), added
 * to the built-in ones by waituntil_main (app/waituntil.c). */
#ifndef WAITUNTIL_APP_HANDLERS_H
#define WAITUNTIL_APP_HANDLERS_H

#include <stddef.h>

#include "waituntil.h"

extern const web_handler_def app_handlers[];
extern const size_t app_nhandlers;

#endif
