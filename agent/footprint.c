/* footprint.c — see footprint.h. */
#include "footprint.h"

#include <malloc.h>

void footprint_at_start(void)
{
    mallopt(M_ARENA_MAX, 2);
}

void footprint_after_startup(void)
{
    malloc_trim(0);
}
