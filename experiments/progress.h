/* A one-line progress display on stderr for long runs, shown only when stderr is a terminal
 * (silent in pipes, logs and `make paper`): "[ 42%] softmax causal n=4096 | 0:12 elapsed,
 * ~0:17 left". Work is counted in caller-chosen units (e.g. predicted seconds or flops), so
 * the remaining time is elapsed * (work left / work done in this run).
 *
 *   progress p;  progress_start(&p, total_units, already_done_units);
 *   ... progress_update(&p, done_units, "%s n=%zu", name, n); ...
 *   progress_clear(&p);   // before printing an ordinary line
 *   progress_end(&p);
 */
#ifndef RK_PROGRESS_H
#define RK_PROGRESS_H

typedef struct {
    int    on;          /* stderr is a terminal                                   */
    int    shown;       /* a line is on screen                                    */
    double t0, last;    /* start and last redraw (monotonic seconds)              */
    double total, done0;
} progress;

double progress_now(void);   /* monotonic clock, seconds */

/* done0: units already finished before this run started (resume); they count toward the
 * percentage but not toward the speed. */
void progress_start(progress *p, double total, double done0);
/* Redraw (at most 5 times a second) with `done` units finished. */
void progress_update(progress *p, double done, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void progress_clear(progress *p);   /* erase the line (it comes back at the next update) */
void progress_end(progress *p);

/* Interruption: catch SIGINT and SIGTERM into a flag the driver polls between steps, so it
 * can stop after the current step with every finished row on disk. The handlers reset
 * themselves (SA_RESETHAND): a second Ctrl-C ends the process at once. */
void progress_catch_signals(void);
void progress_restore_signals(void);
int  progress_stopped(void);        /* the signal caught (SIGINT, SIGTERM), or 0 */

/* "1:05", "2:03:07" (h:mm:ss) into buf. */
const char *progress_hms(double seconds, char *buf, int len);

#endif
