/* The sweeps of `ropekit scaling` and `ropekit approx` cut into units of work over one table
 * (table.h), so that the single-process commands (sweep_main) and the distributed
 * `ropekit-mpi scaling | approx` (mpi/mp_sweep.c) parse the same options, run the same
 * per-point code and write the same tables.
 *
 * A unit is what one process computes whole. scaling: one (variant, mask) series over the
 * lengths (the skip rule predicts a length's time from the series' previous one, so a series
 * cannot be split); approx: one row (norm, variant, kernel, projection, m). Units are numbered
 * in the single-process run's order, and a unit's rows are appended in that order too, so a
 * table written unit by unit in unit order is the single-process table.
 *
 *   void *st = d->setup(&c);                       // after cli_parse(&c, d->spec, ...)
 *   for (u = 0; u < d->units(st); u++)
 *       if (d->todo(st, &t, u, NULL, NULL)) d->run(&c, st, &t, u, &p);
 *   d->summarize(&c, st, &t);
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
    void    *poll_arg;
} sweep_progress;

/* Stop now? A caught SIGINT / SIGTERM (progress_catch_signals), or p->poll. */
int sweep_stopped(sweep_progress *p);

typedef struct {
    const cli_spec *spec;
    const char     *header;    /* the table's column names                                    */
    size_t          nkey;      /* its leading key columns                                     */
    /* Everything that can fail before the table is touched: the options, the resources, a
     * check that every plan of the sweep can be made (cli_die). The state lives until
     * cli_finish (or cli_die) frees it. */
    void  *(*setup)(cli_ctx *c);
    void   (*config)(void *st, char *buf, size_t len);   /* line 1 of the table            */
    size_t (*units)(void *st);
    /* The number of unit u's rows t lacks; *work (may be NULL) the unit's work (progress
     * units, also the cost that balances the MPI ranks), *done the part of it t holds. */
    size_t (*todo)(void *st, const table *t, size_t u, double *work, double *done);
    /* Append the rows of unit u that t lacks to t (the rows it holds are used, not redone).
     * Returns 0, or 1 if stopped (sweep_stopped) with the rows finished so far in t. */
    int    (*run)(cli_ctx *c, void *st, table *t, size_t u, sweep_progress *p);
    /* A line for stdout when row `row` was added (scaling: a skipped point); 1 if buf holds
     * one. NULL: none. */
    int    (*echo)(void *st, const table *t, size_t row, char *buf, size_t len);
    /* The summary from the complete table: stdout and '# summary' lines of the table. */
    void   (*summarize)(cli_ctx *c, void *st, table *t);
} sweep_driver;

extern const sweep_driver scaling_driver, approx_driver;

/* The single-process command: options, the table (--out, --resume), the run header, every
 * unfinished unit in order with the progress line, SIGINT / SIGTERM after the current point
 * (exit 128 + signal), the summary. */
int sweep_main(const sweep_driver *d, int argc, char **argv);

#endif
