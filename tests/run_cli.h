/* Running the ropekit binary from a test: fork + execv of RK_CLI_PATH (the Makefile defines it
 * for every object under tests/), stdout and stderr captured, with a time limit so a hang fails
 * the test instead of stalling the suite. Used by tests/test_badinput.c and tests/test_limits.c. */
#ifndef RK_RUN_CLI_H
#define RK_RUN_CLI_H

#include <stddef.h>
#include <sys/types.h>

#define RUN_CLI_CAP 16384

typedef struct {
    int  code;                  /* exit status; 128 + signal if killed; -1: could not run */
    char out[RUN_CLI_CAP];      /* stdout (cut at RUN_CLI_CAP - 1 bytes), NUL-terminated  */
    char err[RUN_CLI_CAP];      /* stderr, likewise                                         */
} run_cli_result;

/* Run `ropekit args...` (args: NULL-terminated, without argv[0]) in the working directory `cwd`
 * (NULL: the current one), wait at most `timeout_s` seconds (then SIGKILL: code 128 + 9).
 * Returns r->code. */
int run_cli(const char *const *args, const char *cwd, double timeout_s, run_cli_result *r);

/* Options of run_cli_ex (a zeroed struct, with uid = -1, is run_cli). */
typedef struct {
    long               uid;           /* >= 0: run as this user and group (needs root): file
                                         permission tests when the suite runs as root        */
    size_t             mem_limit_mb;  /* > 0: RLIMIT_AS of the child (allocation failure)    */
    const char *const *env;           /* NULL, or "NAME=value" entries added to the child's
                                         environment (NULL-terminated)                       */
    const char        *prog;          /* NULL: ropekit; else this program (e.g. mpirun), run
                                         in its own process group, the whole group killed at
                                         the time limit                                        */
} run_cli_opts;
int run_cli_ex(const char *const *args, const char *cwd, double timeout_s, const run_cli_opts *o,
               run_cli_result *r);

/* Start `ropekit args...` with stdout and stderr on /dev/null and return its pid (-1 on error);
 * wait for it with run_cli_wait (code as above; timeout_s <= 0: no limit). */
pid_t run_cli_start(const char *const *args, const char *cwd);
int   run_cli_wait(pid_t pid, double timeout_s);

#endif
