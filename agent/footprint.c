/* footprint.c — see footprint.h. */
#include "footprint.h"

#include <link.h>
#include <malloc.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

static int advise_read_only_segments(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    (void)arg;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || (ph->p_flags & PF_W))
            continue;
        uintptr_t lo = (info->dlpi_addr + ph->p_vaddr) & ~(page - 1);
        uintptr_t hi = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz + page - 1) & ~(page - 1);
        (void)madvise((void *)lo, hi - lo, MADV_RANDOM); /* advice only: failure is harmless */
    }
    return 1; /* the first object is the program itself: enough (shared libraries, if
                 any, are shared with other processes anyway) */
}

void footprint_at_start(void)
{
    dl_iterate_phdr(advise_read_only_segments, NULL);
    mallopt(M_ARENA_MAX, 2);
}

void footprint_after_startup(void)
{
    malloc_trim(0);
}
