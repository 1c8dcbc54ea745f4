/* ropekit theory: every theoretical statement of the paper as a runnable check, one row each
 * (equation, what is measured, measured value, tolerance and why, PASS/FAIL). The checks are in
 * theory_rope.c, theory_e19.c and theory_favor.c, listed and run by theory.c; this file reads the
 * options, runs them and writes the table. */
#include "cli.h"
#include "decay.h"
#include "theory.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gsl/gsl_version.h>

static const cli_opt opts[] = {
    { "seed", "S", "seed of every random input, 1 .. 4294967295 (default 1); check k draws\n"
      "from mt19937(S + k), FAVOR+ plans use seeds printed in their rows" },
    { "draws", "N", "random draws per RoPE check (default 200; --quick 50)" },
    { "trials", "N", "Monte Carlo estimates per FAVOR+ case (default 20000; --quick 10000)" },
    { "quick", NULL, "fewer draws and trials (wider intervals, same guarantees)" },
    { "only", "ID[,ID...]", "run only these checks (see --list)" },
    { "list", NULL, "list the checks and the deliberate defects, then exit" },
    { "break", "DEFECT", "run the checks on a RoPE with a deliberate defect (see --list):\n"
      "the checks it violates must FAIL" },
    { "break-features", "DEFECT", "the same for the FAVOR+ feature map (see --list)" },
    { "tsv", "FILE", "also write the table as TSV (written atomically)" },
};

static const cli_spec spec = {
    "theory", "[options]",
    "Check the paper's theory on this build: the relative property (11)/(16) up to position\n"
    "1e6 in double and float32, (15) = (34), orthogonality and norms, the complex form\n"
    "(12)/(35), Abel summation (36) and the bound (37), the two pairing layouts, eq. (19)\n"
    "with linear attention, and FAVOR+ (Performer Lemma 1, Lemma 2, Theorem 2). Every row\n"
    "prints the measured worst error or margin, its tolerance and why (derivations in\n"
    "docs/theory.md#checks). Exit status 0 if all pass, 1 if any check fails, 2 on errors.",
    opts, sizeof opts / sizeof opts[0],
};

static void free_rope(void *p) { theory_rope_free(p); }
static void free_cache(void *p) { (void)p; theory_free_cache(); }
static void abort_out(void *p) { decay_atomic_abort(p); }

static void list(void)
{
    printf("checks:\n");
    for (size_t i = 0; i < theory_ncheck; i++) printf("  %s\n", theory_checks[i].id);
    printf("\n--break DEFECT (RoPE under test):\n");
    for (int i = 0; theory_mutant_names[i]; i++)
        printf("  %-12s %s\n", theory_mutant_names[i], theory_mutant_help[i]);
    printf("\n--break-features DEFECT (FAVOR+ feature map):\n");
    for (int i = 1; theory_feat_names[i]; i++)
        printf("  %-12s %s\n", theory_feat_names[i], theory_feat_help[i]);
}

int cmd_theory(int argc, char **argv)
{
    cli_ctx c;
    cli_parse(&c, &spec, argc, argv);
    theory_rope rope;
    decay_atomic out = { 0 };
    memset(&rope, 0, sizeof rope);
    if (cli_flag(&c, "list")) {
        list();
        return cli_finish(&c);
    }
    int quick = cli_flag(&c, "quick");
    theory_config cfg = { 0 };
    cfg.seed = (unsigned long)cli_get_integer(&c, "seed", 1, 1, 4294967295LL);
    cfg.draws = (size_t)cli_get_integer(&c, "draws", quick ? 50 : 200, 1, 1000000);
    cfg.trials = (size_t)cli_get_integer(&c, "trials", quick ? 10000 : 20000, 100, 100000000);

    /* the checks to run */
    int sel[64];
    size_t nsel = 0;
    const char *only = cli_get(&c, "only");
    if (only) {
        char buf[1024];
        if (strlen(only) >= sizeof buf) cli_die(&c, "--only: the list is too long");
        strcpy(buf, only);
        for (char *p = strtok(buf, ","); p; p = strtok(NULL, ",")) {
            int k = theory_find(p);
            if (k < 0) cli_die(&c, "--only: unknown check '%s' (see 'ropekit theory --list')", p);
            for (size_t j = 0; j < nsel; j++)
                if (sel[j] == k) cli_die(&c, "--only: check '%s' given twice", p);
            if (nsel == sizeof sel / sizeof sel[0]) cli_die(&c, "--only: too many checks");
            sel[nsel++] = k;
        }
        if (nsel == 0) cli_die(&c, "--only: no check named");
    } else {
        for (size_t i = 0; i < theory_ncheck; i++) sel[nsel++] = (int)i;
    }
    theory_family = 0;
    for (size_t j = 0; j < nsel; j++) theory_family += (size_t)theory_checks[sel[j]].statistical;

    int mut = cli_get_choice(&c, "break", "defect", theory_mutant_names, -1);
    int feat = cli_get_choice(&c, "break-features", "feature defect", theory_feat_names, 0);
    if (mut >= 0) {
        theory_rope_mutant(&rope, (theory_mutant)mut);
    } else {
        int err = theory_rope_library(&rope);
        if (err) cli_die_rk(&c, err, "cannot set up the library's RoPE");
        cli_defer(&c, free_rope, &rope);
    }
    cfg.rope = &rope;
    cfg.feat = (theory_feat_mutant)feat;
    cli_defer(&c, free_cache, NULL);

    const char *tsv = cli_get(&c, "tsv");
    if (tsv) {
        int e = decay_atomic_open(&out, tsv);
        if (e) cli_die(&c, "--tsv: cannot create a temporary file beside '%s': %s", tsv, strerror(e));
        cli_defer(&c, abort_out, &out);
    }

    char conf[512];
    snprintf(conf, sizeof conf, "ropekit theory %s (GSL %s): seed=%lu draws=%zu trials=%zu rope=%s "
             "features=%s family=%zu%s", rk_version(), GSL_VERSION, cfg.seed, cfg.draws, cfg.trials,
             mut >= 0 ? theory_mutant_names[mut] : "library",
             feat ? theory_feat_names[feat] : "library", theory_family, quick ? " quick" : "");
    printf("%s\n", conf);
    printf("u = 2^-53 (f64), u_f = 2^-24 (f32); g_n = n u/(1 - n u); e(p) = 6u|p| + 8u bounds a "
           "double rotation's error at position p (docs/theory.md#rounding-model)\n\n");
    theory_print_header(stdout);
    if (tsv) {
        fprintf(out.f, "# %s\n", conf);
        theory_tsv_header(out.f);
    }
    size_t npass = 0, nfail = 0, ninfo = 0;
    for (size_t j = 0; j < nsel; j++) {
        theory_result r;
        int err = theory_run((size_t)sel[j], &cfg, &r);
        if (err) {
            char what[96];
            snprintf(what, sizeof what, "check %s", theory_checks[sel[j]].id);
            cli_die_rk(&c, err, what);
        }
        theory_print_row(stdout, j + 1, &r);
        fflush(stdout);
        if (tsv) theory_tsv_row(out.f, &r);
        if (r.cmp == THEORY_INFO) ninfo++;
        else if (r.pass) npass++;
        else nfail++;
    }
    printf("\n%zu checks: %zu PASS, %zu FAIL, %zu INFO\n", nsel, npass, nfail, ninfo);
    if (tsv) {
        int e = decay_atomic_commit(&out);
        if (e) cli_die(&c, "--tsv: cannot write '%s': %s (the target is unchanged)", tsv, strerror(e));
    }
    if (fflush(stdout) != 0) cli_die(&c, "write error on stdout: %s", strerror(errno));
    cli_finish(&c);
    return nfail ? 1 : 0;
}
