/* freed_marker.h — counts heap blocks freed while they still hold a marker
 * (a credential that should have been wiped first).  The unit tests run under
 * ASan, whose free hook sees each block while it is still readable. */
#ifndef AURORA_TEST_FREED_MARKER_H
#define AURORA_TEST_FREED_MARKER_H

#include <sanitizer/allocator_interface.h>
#include <string.h>

static const char *volatile g_freed_marker;   /* armed while non-NULL */
static volatile int g_freed_with_marker;

static void freed_marker_free_hook(const volatile void *p)
{
    const char *m = g_freed_marker;
    if (!m || !p)
        return;
    size_t n = __sanitizer_get_allocated_size((const void *)p);
    if (n && memmem((const void *)p, n, m, strlen(m)))
        g_freed_with_marker++;
}

static void freed_marker_malloc_hook(const volatile void *p, size_t n)
{
    (void)p;
    (void)n;
}

/* Starts counting the blocks freed that hold marker (a static string). */
static int freed_marker_arm(const char *marker)
{
    static int installed;
    if (!installed)
        installed = __sanitizer_install_malloc_and_free_hooks(freed_marker_malloc_hook,
                                                              freed_marker_free_hook);
    g_freed_with_marker = 0;
    g_freed_marker = marker;
    return installed;
}

/* Stops counting; returns how many such blocks were freed. */
static int freed_marker_disarm(void)
{
    g_freed_marker = NULL;
    return g_freed_with_marker;
}

#endif
