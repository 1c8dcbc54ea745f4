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

void sweep_out_table(cli_ctx *c, const char *header, size_t nkey, sweep_table *tt)
{
    tt->path = cli_get(c, "out");
    tt->opt = "--out";
    tt->header = header;
    tt->nkey = nkey;
}

void sweep_open_tables(cli_ctx *c, const sweep_driver *d, void *st, table *t, int files)
{
    const int resume = cli_flag(c, "resume");
    sweep_table tt;
    for (size_t k = 0; k < d->ntables; k++) {
        memset(&tt, 0, sizeof tt);
        d->table(c, st, k, &tt);
        const char *path = files ? tt.path : NULL;
        if (table_open(&t[k], path, tt.config, tt.header, tt.nkey, files && resume))
            cli_die(c, "%s%s%s", tt.opt ? tt.opt : "", tt.opt ? ": " : "", t[k].err);
        cli_defer(c, close_table, &t[k]);
        if (files && k == 0 && machine_run_header(&t[0], path, tt.config))
            cli_die(c, "%s%s%s", tt.opt ? tt.opt : "", tt.opt ? ": " : "", t[0].err);
    }
}

int sweep_main(const sweep_driver *d, int argc, char **argv)
{
    cli_ctx c;
    cli_parse(&c, d->spec, argc, argv);
    void *st = d->setup(&c);
    static table tab[SWEEP_MAX_TABLES];
    sweep_open_tables(&c, d, st, tab, 1);

    progress_catch_signals();
    cli_defer(&c, restore_signals, NULL);
    static sweep_progress p;
    memset(&p, 0, sizeof p);
    const size_t nu = d->units(st);
    double total = 0.0, done0 = 0.0;
    for (size_t u = 0; u < nu; u++) {
        double w, dn;
        d->todo(st, tab, u, &w, &dn);
        total += w;
        done0 += dn;
    }
    progress_start(&p.pr, total, done0);
    p.done = done0;
    echo_ctx e = { d, st, &p };
    if (d->echo) {
        tab[0].on_add = echo_row;
        tab[0].on_add_arg = &e;
    }
    int interrupted = 0;
    for (size_t u = 0; u < nu && !interrupted; u++)
        if (d->todo(st, tab, u, NULL, NULL)) interrupted = d->run(&c, st, tab, u, &p);
    progress_end(&p.pr);
    tab[0].on_add = NULL;
    if (interrupted) {
        fflush(stdout);
        int sig = progress_stopped();
        const char *out = tab[0].path;
        fprintf(stderr, "ropekit %s: interrupted (%s); %zu finished rows are in %s%s\n",
                d->spec->cmd, sig == SIGINT ? "SIGINT" : "SIGTERM", tab[0].nrows,
                out ? out : "(no --out)", out ? " (rerun with --resume to continue)" : "");
        cli_finish(&c);
        return 128 + sig;
    }
    d->summarize(&c, st, tab);
    return cli_finish(&c);
}
