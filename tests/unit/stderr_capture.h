/* stderr_capture.h — what the process writes to fd 2 (the logger's lines)
 * while one function runs, for the unit tests that count log lines.
 * Header-only, for the test files that include it.
 *
 * Into a file, not a pipe: a function that logs more than a pipe holds
 * would block on its own lines. */
#ifndef AURORA_TEST_STDERR_CAPTURE_H
#define AURORA_TEST_STDERR_CAPTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Runs fn(arg) with fd 2 sent to an unlinked temporary file; returns that
 * file open for reading from its start (the caller fcloses it). */
static FILE *stderr_capture(void (*fn)(void *), void *arg)
{
    char path[] = "/tmp/aurora-test-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fd, 2), 2);
    fn(arg);
    fflush(stderr);
    assert_int_equal(dup2(saved, 2), 2);
    close(saved);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    FILE *f = fdopen(fd, "r");
    assert_non_null(f);
    return f;
}

#endif
