/* The single-process run of a sweep (see sweep.h). */
#include "sweep.h"
#include "machine.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

int sweep_stopped(sweep_progress *p)
{
    return progress_stopped() || (p->poll && p->poll(p->poll_arg));
}

typedef struct {
    const sweep_driver *d;
    void               *st;
    sweep_progress     *p;
} echo_ctx;

static void echo_row(void *arg, table *t, size_t row)
{
    echo_ctx *e = arg;
    char line[512];
    if (!e->d->echo(e->st, t, row, line, sizeof line)) return;
    progress_clear(&e->p->pr);
    puts(line);
    fflush(stdout);
}

static void close_table(void *t) { table_close(t); }
static void restore_signals(void *p) { (void)p; progress_restore_signals(); }

int sweep_main(const sweep_driver *d, int argc, char **argv)
{
    cli_ctx c;
    cli_parse(&c, d->spec, argc, argv);
    void *st = d->setup(&c);
    char config[2048];
    d->config(st, config, sizeof config);
    const char *out = cli_get(&c, "out");
    static table tab;
    if (table_open(&tab, out, config, d->header, d->nkey, cli_flag(&c, "resume")))
        cli_die(&c, "--out: %s", tab.err);
    cli_defer(&c, close_table, &tab);
    /* run header: stdout and the table */
    if (machine_run_header(&tab, out, config)) cli_die(&c, "--out: %s", tab.err);

    progress_catch_signals();
    cli_defer(&c, restore_signals, NULL);
    static sweep_progress p;
    memset(&p, 0, sizeof p);
    const size_t nu = d->units(st);
    double total = 0.0, done0 = 0.0;
    for (size_t u = 0; u < nu; u++) {
        double w, dn;
        d->todo(st, &tab, u, &w, &dn);
        total += w;
        done0 += dn;
    }
    progress_start(&p.pr, total, done0);
    p.done = done0;
    echo_ctx e = { d, st, &p };
    if (d->echo) {
        tab.on_add = echo_row;
        tab.on_add_arg = &e;
    }
    int interrupted = 0;
    for (size_t u = 0; u < nu && !interrupted; u++)
        if (d->todo(st, &tab, u, NULL, NULL)) interrupted = d->run(&c, st, &tab, u, &p);
    progress_end(&p.pr);
    tab.on_add = NULL;
    if (interrupted) {
        fflush(stdout);
        int sig = progress_stopped();
        fprintf(stderr, "ropekit %s: interrupted (%s); %zu finished rows are in %s%s\n",
                d->spec->cmd, sig == SIGINT ? "SIGINT" : "SIGTERM", tab.nrows,
                out ? out : "(no --out)", out ? " (rerun with --resume to continue)" : "");
        cli_finish(&c);
        return 128 + sig;
    }
    d->summarize(&c, st, &tab);
    return cli_finish(&c);
}
