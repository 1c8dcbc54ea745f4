/* ropekit-mpi: shared pieces of the MPI programs (mpi/). The library and the plain
 * `ropekit` know nothing of MPI; everything here talks to it.
 *
 * Errors: every rank runs the same sequence of "phases"; a phase ends with mp_agree(0), a
 * collective that returns when no rank failed. A rank that fails inside a phase (cli_die,
 * through the cli_exit_hook, or a library error it notes with mp_fail) calls mp_agree(1)
 * instead; then the lowest failing rank's message is printed once, by rank 0, as
 * "ropekit-mpi <cmd>: [rank R] <message>", and every rank exits with status 2. A phase that
 * communicates never calls cli_die in the middle: it records the failure and keeps taking
 * part in the exchanges until its closing mp_agree, so nothing hangs. A rank that dies (a
 * signal) is seen by mpirun, which ends the job. */
#ifndef RK_MP_H
#define RK_MP_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "cli.h"

extern int mp_rank, mp_size;

/* MPI_Init_thread (funneled: OpenMP inside each rank, MPI from the main thread), the
 * cli_exit_hook, stdout of ranks other than 0 to /dev/null. `cmd` names the command in
 * messages. */
void mp_init(int *argc, char ***argv);
void mp_set_cmd(const char *cmd);
/* The collective error check (see above); returns only when no rank failed. */
void mp_agree(int failed);
/* A phase whose ranks talk point to point, each at its own pace (mp_sweep.c), cannot have a
 * failing rank jump to mp_agree while others wait for its messages: fn runs once, on the
 * failing rank, after cli_die's cleanups and before it joins mp_agree, to bring every rank
 * there. NULL: none. */
void mp_set_fail_notice(void (*fn)(void));
/* Record a failure of this rank (printf-style) for the next mp_agree; returns 1. The first
 * one recorded is kept. */
int mp_fail(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
int mp_failed(void);
/* MPI_Finalize and exit(status). */
_Noreturn void mp_exit(int status);

/* Rows of a sequence of n cut over P ranks: contiguous blocks, or zigzag (2P chunks, rank r
 * holding chunks r and 2P - 1 - r, so causal work balances). A rank's rows are its segments
 * in order. */
typedef struct { size_t start, len; } mp_seg;
typedef struct { mp_seg seg[2]; int nseg; size_t rows; } mp_block;
mp_block mp_block_of(size_t n, int P, int r, int zigzag);

/* Peak resident memory of this process (VmHWM), bytes; 0 if unknown. */
size_t mp_peak_rss(void);
double mp_now(void);

/* The commands (mpi/mp_attend.c, mpi/mp_bench.c, mpi/mp_sweep.c). */
int mp_cmd_attend(int argc, char **argv);
int mp_cmd_bench(int argc, char **argv);
int mp_cmd_scaling(int argc, char **argv);
int mp_cmd_approx(int argc, char **argv);
int mp_cmd_train(int argc, char **argv);

/* Test hook (ROPEKIT_MPI_KILL_RANK=R): rank R kills itself with SIGKILL at the point `where`
 * names when ROPEKIT_MPI_KILL_AT equals it (default "ring"). */
void mp_test_kill(const char *where);
/* Test hook (ROPEKIT_MPI_FAIL_RANK=R, ROPEKIT_MPI_FAIL_AT=where): 1 on rank R at the point
 * `where` names; the caller fails there as a real error would. */
int mp_test_fail(const char *where);
/* Test hook (ROPEKIT_MPI_PRIVATE_DIRS=1), applied by mp_init: every rank R > 0 works in
 * ./rank<R> (made if missing), as on a node that does not share rank 0's file system: files a
 * rank writes under relative paths are then its own. */

#endif
