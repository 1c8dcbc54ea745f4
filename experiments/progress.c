/* Progress line on stderr (see progress.h). */
#include "progress.h"

#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double progress_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *progress_hms(double s, char *buf, int len)
{
    if (!(s >= 0.0) || s > 1e8) { snprintf(buf, (size_t)len, "?"); return buf; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, (size_t)len, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, (size_t)len, "%ld:%02ld", t / 60, t % 60);
    return buf;
}

void progress_start(progress *p, double total, double done0)
{
    p->on = isatty(2);
    p->shown = 0;
    p->t0 = progress_now();
    p->last = -1.0;
    p->total = total;
    p->done0 = done0;
}

void progress_update(progress *p, double done, const char *fmt, ...)
{
    if (!p->on) return;
    double now = progress_now();
    if (p->last >= 0.0 && now - p->last < 0.2) return;
    p->last = now;
    char what[160], el[32], left[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    double elapsed = now - p->t0, run_done = done - p->done0;
    double pct = p->total > 0.0 ? 100.0 * done / p->total : 0.0;
    if (pct > 100.0) pct = 100.0;
    progress_hms(elapsed, el, sizeof el);
    if (run_done > 0.0 && elapsed > 0.5)
        progress_hms(elapsed * (p->total - done) / run_done, left, sizeof left);
    else
        snprintf(left, sizeof left, "?");
    fprintf(stderr, "\r\033[K[%3.0f%%] %s | %s elapsed, ~%s left", pct, what, el, left);
    fflush(stderr);
    p->shown = 1;
}

void progress_clear(progress *p)
{
    if (!p->on || !p->shown) return;
    fputs("\r\033[K", stderr);
    fflush(stderr);
    p->shown = 0;
    p->last = -1.0;   /* redraw at the next update */
}

void progress_end(progress *p)
{
    progress_clear(p);
    p->on = 0;
}

/* ---- interruption ------------------------------------------------------------------------ */
static volatile sig_atomic_t stop_signal;
static struct sigaction old_int, old_term;
static int caught;

static void on_signal(int sig) { stop_signal = sig; }

void progress_catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    stop_signal = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    caught = 1;
}

void progress_restore_signals(void)
{
    if (!caught) return;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    caught = 0;
}

int progress_stopped(void) { return (int)stop_signal; }
