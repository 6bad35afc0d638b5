/* free_watch.h — counts blocks released while they still hold a marker.
 *
 * The unit tests run under ASan, whose allocator calls a free hook before
 * a block is released (and before realloc lets go of the old one), while
 * its bytes are still readable: a test arms the watch with a marker (a
 * fake credential), runs the code, and asserts that nothing was freed with
 * the marker in it, i.e. every copy was wiped first.  Only one watch at a
 * time, from one thread. */
#ifndef AURORA_TEST_FREE_WATCH_H
#define AURORA_TEST_FREE_WATCH_H

#include <sanitizer/allocator_interface.h>
#include <string.h>

static const char *volatile free_watch_marker; /* armed while non-NULL */
static volatile int free_watch_hits;

static void free_watch_malloc_hook(const volatile void *p, size_t n)
{
    (void)p;
    (void)n;
}

static void free_watch_free_hook(const volatile void *p)
{
    const char *m = free_watch_marker;
    if (!m || !p)
        return;
    size_t n = __sanitizer_get_allocated_size((const void *)p);
    if (n && memmem((const void *)p, n, m, strlen(m)))
        free_watch_hits++;
}

/* Starts counting frees of blocks holding marker (kept by pointer).
 * Nonzero once the hook is in (a test asserts it, so that a build without
 * the sanitizer's hooks cannot pass by seeing nothing). */
static int free_watch_arm(const char *marker)
{
    static int installed;
    if (!installed)
        installed = __sanitizer_install_malloc_and_free_hooks(free_watch_malloc_hook,
                                                              free_watch_free_hook);
    free_watch_hits = 0;
    free_watch_marker = marker;
    return installed;
}

/* Stops counting; returns how many blocks were freed holding the marker. */
static int free_watch_disarm(void)
{
    free_watch_marker = NULL;
    return free_watch_hits;
}

#endif
