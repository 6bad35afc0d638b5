/* slow_echo.c — the I/O-bound command of bench/run.sh (row 1c): waits
 * SLOW_ECHO_MS milliseconds without using the CPU (standing in for a kubectl
 * call waiting on the API server), then prints its arguments like echo.
 * The same binary runs in both arms of the comparison. */
#include <stdio.h>
#include <time.h>

#ifndef SLOW_ECHO_MS
#define SLOW_ECHO_MS 30
#endif

int main(int argc, char **argv)
{
    struct timespec ts = { SLOW_ECHO_MS / 1000, (SLOW_ECHO_MS % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0)
        ;
    for (int i = 1; i < argc; i++)
        printf("%s%s", i > 1 ? " " : "", argv[i]);
    printf("\n");
    return fflush(stdout) == 0 ? 0 : 1;
}
