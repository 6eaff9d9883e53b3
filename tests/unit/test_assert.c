/* test_assert.c -- unit tests for base/assert.h.
 *
 * A failing CC_ASSERT aborts the process, so each failure case runs in a forked
 * child with stderr on a pipe; the parent checks the child died of SIGABRT and that
 * the message names the file, line and expression. Core dumps are disabled in the
 * child so the test leaves nothing behind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/assert.h"

#define CHILD_OUTPUT_MAX 1024 /* ample for one assertion message */

enum which { WHICH_ASSERT, WHICH_UNREACHABLE };

static void child_body(enum which w)
{
    const int one = 1;
    if (w == WHICH_ASSERT) {
        CC_ASSERT(one + 1 == 3);
    } else {
        CC_UNREACHABLE();
    }
}

/* Runs child_body(w) in a child; returns its wait status and fills out with stderr. */
static int run_child(enum which w, char *out, size_t out_size)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    const pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        child_body(w);
        _exit(0);
    }
    close(fds[1]);
    size_t used = 0;
    ssize_t n;
    while (used + 1 < out_size && (n = read(fds[0], out + used, out_size - 1 - used)) > 0) {
        used += (size_t)n;
    }
    out[used] = '\0';
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static void test_true_passes_and_evaluates_once(void **state)
{
    int n = 0;
    CC_ASSERT(++n == 1);
    assert_int_equal(n, 1);
}

static void test_false_aborts_with_location(void **state)
{
    char out[CHILD_OUTPUT_MAX];
    const int status = run_child(WHICH_ASSERT, out, sizeof out);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    assert_non_null(strstr(out, "test_assert.c:"));
    assert_non_null(strstr(out, "child_body"));
    assert_non_null(strstr(out, "assertion failed: one + 1 == 3"));
}

static void test_unreachable_aborts(void **state)
{
    char out[CHILD_OUTPUT_MAX];
    const int status = run_child(WHICH_UNREACHABLE, out, sizeof out);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    assert_non_null(strstr(out, "unreachable code reached"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_true_passes_and_evaluates_once),
        cmocka_unit_test(test_false_aborts_with_location),
        cmocka_unit_test(test_unreachable_aborts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
