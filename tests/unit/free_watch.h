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

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* dladdr */
#endif
#include <dlfcn.h>
#include <execinfo.h>
#include <sanitizer/allocator_interface.h>
#include <string.h>

static const char *volatile free_watch_marker; /* armed while non-NULL */
static volatile int free_watch_hits;
static const char *volatile free_watch_skipped; /* a library whose own frees do not count */

/* 1 if a frame of the current stack lies in a shared object whose file name
 * contains name (the free is that library's own, e.g. libcurl's buffers). */
static int free_watch_in_module(const char *name)
{
    void *frames[64];
    int n = backtrace(frames, 64);
    for (int i = 0; i < n; i++) {
        Dl_info info;
        if (dladdr(frames[i], &info) && info.dli_fname && strstr(info.dli_fname, name))
            return 1;
    }
    return 0;
}

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
    if (n && memmem((const void *)p, n, m, strlen(m)) &&
        !(free_watch_skipped && free_watch_in_module(free_watch_skipped)))
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

/* As free_watch_arm, but frees made from inside the shared library whose
 * file name contains module ("libcurl") are not counted: copies that
 * library keeps in its own buffers are its residual, not the caller's. */
static inline int free_watch_arm_skipping(const char *marker, const char *module)
{
    void *warm[4];
    (void)backtrace(warm, 4); /* loads the unwinder now, not inside the hook */
    free_watch_skipped = module;
    return free_watch_arm(marker);
}

/* Fills buf (n bytes, NUL-terminated) with a text value of a few KiB, as a
 * PEM or a service-account key is, holding marker near its start and near
 * its end: a copy cut anywhere still shows it. */
static inline void free_watch_value(char *buf, size_t n, const char *marker)
{
    size_t m = strlen(marker);
    for (size_t i = 0; i + 1 < n; i++)
        buf[i] = (char)('a' + i % 26);
    memcpy(buf + n / 40, marker, m);
    memcpy(buf + n - 1 - n / 4, marker, m);
    buf[n - 1] = '\0';
}

/* Stops counting; returns how many blocks were freed holding the marker. */
static int free_watch_disarm(void)
{
    free_watch_marker = NULL;
    free_watch_skipped = NULL;
    return free_watch_hits;
}

#endif
