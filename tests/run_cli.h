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

/* `mpirun -q --oversubscribe --bind-to none -np P ropekit-mpi args...` (RK_MPIRUN and
 * RK_MPI_PATH, from the Makefile) in `cwd`, with what every MPI test needs in the environment
 * (root allowed, one OpenMP thread per rank, ASan's leak check off in the ranks) plus `env`
 * ("NAME=value" entries, NULL-terminated, or NULL), each exported to the ranks (-x NAME).
 * Returns r->code (mpirun's status). */
int run_mpi(int P, const char *const *args, const char *const *env, const char *cwd,
            double timeout_s, run_cli_result *r);
/* An MPI test group's setup: mpirun is there (else a message on stderr) and a new directory
 * /tmp/<tag>_XXXXXX is made into dir. 0, or -1. */
int run_mpi_dir(char *dir, size_t len, const char *tag);

#endif
