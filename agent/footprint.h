/* footprint.h — keeping the idle agent's resident memory small (issue 14;
 * docs/agent-footprint.md has the measurements behind each step). */
#ifndef AURORA_AGENT_FOOTPRINT_H
#define AURORA_AGENT_FOOTPRINT_H

/* First thing in main().  The kernel maps up to 16 neighbouring pages of a
 * file on each page fault ("fault-around"); the static agent's code and
 * read-only data, touched here and there by OpenSSL and libwebsockets
 * initialisation, ended up almost entirely resident that way (5.0 of 5.4 MiB).
 * MADV_RANDOM on the program's read-only segments maps only the page that
 * faulted.  Also caps malloc at two arenas: every job thread would otherwise
 * get an arena of its own that stays resident after the job. */
void footprint_at_start(void);

/* Once the tunnel is first up: hands the heap freed during start-up (TLS
 * set-up, configuration parsing) back to the kernel. */
void footprint_after_startup(void);

#endif
