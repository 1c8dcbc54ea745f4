/* The sweeps of `ropekit scaling`, `ropekit approx` and `ropekit train --compare` cut into units
 * of work over their tables (table.h), so that the single-process commands (sweep_main; train
 * --compare has its own, with --jobs) and the distributed `ropekit-mpi scaling | approx | train`
 * (mpi/mp_sweep.c) parse the same options, run the same per-unit code and write the same
 * tables.
 *
 * A unit is what one process computes whole. scaling: one (variant, mask) series over the
 * lengths (the skip rule predicts a length's time from the series' previous one, so a series
 * cannot be split); approx: one row (norm, variant, kernel, projection, m); train: one run
 * (arm, seed). Units are numbered in the single-process run's order, and a unit's rows are
 * appended in that order too, so a table written unit by unit in unit order is the
 * single-process table.
 *
 *   void *st = d->setup(&c);                       // after cli_parse(&c, d->spec, ...)
 *   sweep_open_tables(&c, d, st, t, 1);            // t[0 .. d->ntables - 1]
 *   for (u = 0; u < d->units(st); u++)
 *       if (d->todo(st, t, u, NULL, NULL)) d->run(&c, st, t, u, &p);
 *   d->summarize(&c, st, t);
 */
#ifndef RK_SWEEP_H
#define RK_SWEEP_H

#include "cli.h"
#include "progress.h"
#include "table.h"

/* Progress of a run, and how a distributed run asks a unit to stop between points. */
typedef struct {
    progress pr;                 /* the progress line (off unless stderr is a terminal)       */
    double   done;               /* work finished, in the driver's units                       */
    int    (*poll)(void *arg);   /* NULL, or nonzero when the unit should stop (mpi/)           */
    void    *poll_arg;           /* the argument of poll and keep                               */
    /* NULL, or: the unit has finished the file at path (train: a run's final checkpoint), and
     * rank 0 must hold it there too (mpi/: the bytes are sent to rank 0, which writes them at
     * the same path unless its file already has them). Called before the rows that record the
     * file as finished, so a table that says "done" has the file next to it. */
    void   (*keep)(void *arg, const char *path);
} sweep_progress;

/* Stop now? A caught SIGINT / SIGTERM (progress_catch_signals), or p->poll. */
int sweep_stopped(sweep_progress *p);

#define SWEEP_MAX_TABLES 4

/* One table of a sweep. */
typedef struct {
    const char *path;          /* its file; NULL: none (the table lives in memory)            */
    const char *opt;           /* the option named in its errors ("--out"), or NULL           */
    const char *header;        /* its column names                                            */
    size_t      nkey;          /* its leading key columns                                     */
    char        config[4608];  /* line 1: everything that determines its rows                 */
} sweep_table;

typedef struct {
    const cli_spec *spec;
    size_t          ntables;   /* 1 .. SWEEP_MAX_TABLES                                       */
    /* Everything that can fail before a table is touched: the options, the resources, a
     * check that every plan of the sweep can be made (cli_die). The state lives until
     * cli_finish (or cli_die) frees it. */
    void  *(*setup)(cli_ctx *c);
    /* Table k (0 .. ntables - 1). Table 0 gets the run header. */
    void   (*table)(cli_ctx *c, void *st, size_t k, sweep_table *tt);
    size_t (*units)(void *st);
    /* The functions below get the ntables tables as the array t (t[0] .. t[ntables - 1]).
     * Nonzero if unit u is unfinished in t (the number of rows t lacks); *work (may be NULL)
     * the unit's work (progress units, also the cost that balances the MPI ranks), *done the
     * part of it t holds. */
    size_t (*todo)(void *st, const table *t, size_t u, double *work, double *done);
    /* Append the rows of unit u that t lacks to t (the rows it holds are used, not redone).
     * Returns 0, or 1 if stopped (sweep_stopped) with the rows finished so far in t. */
    int    (*run)(cli_ctx *c, void *st, table *t, size_t u, sweep_progress *p);
    /* A line for stdout when row `row` was added to t[0] (scaling: a skipped point); 1 if
     * buf holds one. NULL: none. */
    int    (*echo)(void *st, const table *t, size_t row, char *buf, size_t len);
    /* The summary from the complete tables: stdout, '# summary' lines, files. */
    void   (*summarize)(cli_ctx *c, void *st, table *t);
    /* 0: under MPI, rank 0 writes the rows in the single-process order (a unit's rows once
     * every earlier unit's are there; rows of later units wait in its memory). 1: it writes
     * each row as it arrives (train: units are long, a unit's rows record its progress and
     * --resume keeps them; the order of rows then depends on the ranks, as with --jobs). */
    int             arrival_order;
    /* What the ranks change, for ropekit-mpi's --help (after "Under mpirun -np P
     * (ropekit-mpi): "); NULL: the units are spread over the ranks, rank 0 writes the table. */
    const char     *mpi_help;
} sweep_driver;

/* The table of a one-table sweep written to --out (the option's value, may be NULL). */
void sweep_out_table(cli_ctx *c, const char *header, size_t nkey, sweep_table *tt);

/* Open the driver's tables into t[0 .. ntables - 1], closed by cli_finish or cli_die: files
 * (their paths, with --resume) and the run header in t[0] (machine_run_header) if files is
 * nonzero, else every table in memory only. Dies with the table's message. */
void sweep_open_tables(cli_ctx *c, const sweep_driver *d, void *st, table *t, int files);

extern const sweep_driver scaling_driver, approx_driver;
/* ropekit train --compare as a sweep (experiments/cmd_train.c): refuses the other modes of
 * train and --jobs (under MPI the ranks are the parallel runs). */
extern const sweep_driver train_compare_driver;

/* The single-process command: options, the tables (--resume), the run header, every
 * unfinished unit in order with the progress line, SIGINT / SIGTERM after the current point
 * (exit 128 + signal), the summary. */
int sweep_main(const sweep_driver *d, int argc, char **argv);

#endif
