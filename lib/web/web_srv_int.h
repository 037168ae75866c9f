/* web_srv_int.h -- lib/web server internals shared by server.c and
 * status.c.  Not installed; not API. */
#ifndef WAITUNTIL_WEB_SRV_INT_H
#define WAITUNTIL_WEB_SRV_INT_H

#include "web_server.h"

defer_pool *web_srv_pool(const web_server *s);

#endif
