/* footprint.h — keeping the agent's resident memory small (issue 14;
 * docs/agent-footprint.md has the measurements behind each step). */
#ifndef AURORA_AGENT_FOOTPRINT_H
#define AURORA_AGENT_FOOTPRINT_H

/* First thing in main(): caps malloc at two arenas.  Every job thread would
 * otherwise get an arena of its own (up to 8 per core), whose memory stays
 * resident after the job: an agent that once ran 16 commands at a time idled
 * with 16 arenas. */
void footprint_at_start(void);

/* Once the tunnel is first up: hands the heap freed during start-up (TLS
 * set-up, configuration parsing) back to the kernel. */
void footprint_after_startup(void);

#endif
