/* The figure scripts (plots/<name>.sh, the `make plots-<name>` / `make paper` contract: ROPEKIT,
 * OUTDIR, the command's own options as arguments): each runs on small tables made by the real
 * `ropekit` for every option value that changes the table's shape (masks, variant, kernel and
 * projection subsets, one length or one m, encodings subsets, d, base, scaling, distance range,
 * draws 0, ...), and every figure it promises must be there, as a PNG (signature) and an SVG,
 * with no staging directory left behind. A gnuplot failure (a gnuplot on PATH that fails its
 * k-th run) must make the script fail and leave none of its figures, not even older ones, and a
 * bad option must exit 2 with none either. A figure path that is a symbolic link keeps its link
 * (the figure goes to the target), also when a later run fails. */
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef RK_TESTS_DIR
#  define RK_TESTS_DIR "tests"
#endif
#ifndef RK_CLI_PATH
#  define RK_CLI_PATH "build/ropekit"
#endif

typedef struct {
    char dir[64];            /* scratch directory of the group */
    int  n;                  /* runs so far (each gets its own OUTDIR) */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/rk_plots_XXXXXX");
    if (!mkdtemp(f->dir)) { free(f); return -1; }
    /* a gnuplot that fails on its RK_GP_FAIL_AT-th run and runs the real one otherwise */
    char path[128];
    snprintf(path, sizeof path, "%s/bin", f->dir);
    if (mkdir(path, 0700) != 0) return -1;
    snprintf(path, sizeof path, "%s/bin/gnuplot", f->dir);
    FILE *g = fopen(path, "w");
    if (!g) return -1;
    fprintf(g, "#!/bin/sh\n"
               "n=$(cat \"$RK_GP_COUNT\" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > \"$RK_GP_COUNT\"\n"
               "if [ \"$n\" = \"$RK_GP_FAIL_AT\" ]; then echo 'gnuplot (test shim): line 1: error' >&2; exit 1; fi\n"
               "exec %s \"$@\"\n", "$RK_REAL_GNUPLOT");
    if (fclose(g) != 0 || chmod(path, 0700) != 0) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

/* Run plots/<script>.sh args with OUTDIR = <dir>/<out>; fail_at > 0 puts the failing gnuplot
 * shim first on PATH (it fails its fail_at-th run); extra: more environment. Returns the exit
 * status; the output is in <dir>/<out>.log. */
static int run_script(fixture *f, const char *script, const char *out, const char *args,
                      int fail_at, const char *extra)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && rm -f gp.count && RK_REAL_GNUPLOT=$(command -v gnuplot) RK_GP_COUNT='%s/gp.count' "
             "RK_GP_FAIL_AT=%d %s %s ROPEKIT='%s' OUTDIR='%s/%s' sh '%s/../plots/%s.sh' %s > '%s.log' 2>&1",
             f->dir, f->dir, fail_at, fail_at > 0 ? "PATH=\"$PWD/bin:$PATH\"" : "", extra ? extra : "",
             RK_CLI_PATH, f->dir, out, RK_TESTS_DIR, script, args, out);
    int st = system(cmd);
    f->n++;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static void show_log(const fixture *f, const char *out)
{
    char path[256], line[512];
    snprintf(path, sizeof path, "%s/%s.log", f->dir, out);
    FILE *l = fopen(path, "r");
    if (!l) return;
    while (fgets(line, sizeof line, l)) print_error("  | %s", line);
    fclose(l);
}

/* 1 if <dir>/<out>/<name> exists and is non-empty */
static int has_file(const fixture *f, const char *out, const char *name)
{
    char path[256];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s/%s", f->dir, out, name);
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0;
}

/* Every figure of the space-separated list is a PNG and an SVG; no staging directory is left;
 * and the figures in `absent` are not there. */
static void expect_figures(const fixture *f, const char *out, const char *figs, const char *absent)
{
    char list[256], path[256];
    snprintf(list, sizeof list, "%s", figs);
    for (char *save = NULL, *fig = strtok_r(list, " ", &save); fig; fig = strtok_r(NULL, " ", &save)) {
        unsigned char sig[8] = { 0 };
        snprintf(path, sizeof path, "%s/%s/%s.png", f->dir, out, fig);
        FILE *p = fopen(path, "rb");
        size_t got = p ? fread(sig, 1, sizeof sig, p) : 0;
        if (p) fclose(p);
        if (got != 8 || memcmp(sig, "\x89PNG\r\n\x1a\n", 8) != 0) {
            show_log(f, out);
            fail_msg("%s: %s.png is missing or not a PNG", out, fig);
        }
        snprintf(path, sizeof path, "%s/%s/%s.svg", f->dir, out, fig);
        char *svg = NULL;
        FILE *s = fopen(path, "rb");
        char head[4096] = "";
        if (s) {
            size_t n = fread(head, 1, sizeof head - 1, s);
            head[n] = '\0';
            fclose(s);
            svg = strstr(head, "<svg");
        }
        if (!svg) {
            show_log(f, out);
            fail_msg("%s: %s.svg is missing or not an SVG", out, fig);
        }
    }
    snprintf(list, sizeof list, "%s", absent ? absent : "");
    for (char *save = NULL, *fig = strtok_r(list, " ", &save); fig; fig = strtok_r(NULL, " ", &save)) {
        char name[96];
        snprintf(name, sizeof name, "%s.png", fig);
        if (has_file(f, out, name)) fail_msg("%s: %s should not have been drawn", out, name);
        snprintf(name, sizeof name, "%s.svg", fig);
        if (has_file(f, out, name)) fail_msg("%s: %s should not have been drawn", out, name);
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls -a '%s/%s' 2>/dev/null | grep -q '^\\.stage'", f->dir, out);
    if (system(cmd) == 0) fail_msg("%s: a staging directory was left behind", out);
}

/* A run that must fail: exit status as given (0: any nonzero), and none of the figures. */
static void expect_failure(fixture *f, const char *out, int want, int st, const char *figs)
{
    if (want ? st != want : st == 0) {
        show_log(f, out);
        fail_msg("%s: exit status %d, expected %s%d", out, st, want ? "" : "nonzero, not ", want);
    }
    expect_figures(f, out, "", figs);
}

static void ok_run(fixture *f, const char *script, const char *out, const char *args,
                   const char *figs, const char *absent)
{
    int st = run_script(f, script, out, args, 0, NULL);
    if (st != 0) {
        show_log(f, out);
        fail_msg("plots/%s.sh %s: exit status %d", script, args, st);
    }
    expect_figures(f, out, figs, absent);
}

/* ---- decay: d, base, scaling, distance range, draws, dist --------------------------------- */
static void test_decay_options(void **state)
{
    fixture *f = *state;
    ok_run(f, "decay", "decay_default", "--draws 40 --max-distance 64", "fig2 scores bases", NULL);
    ok_run(f, "decay", "decay_rope",
           "--dim 16 --base 100,500000 --scaling none,ntk:2,yarn:2:64 --draws 30 --dist uniform "
           "--seed 3 --min-distance -32 --max-distance=32 --step 0.5", "fig2 scores bases", NULL);
    ok_run(f, "decay", "decay_nodraws", "--draws 0 --scaling linear:2 --base 500000",
           "fig2 bases", "scores");
    ok_run(f, "decay", "decay_same", "--dist same --draws 20 --max-distance 16 --dim 8",
           "fig2 scores bases", NULL);
    /* the user's settings reach the tables */
    assert_true(has_file(f, "decay_rope", "scores_uniform.tsv"));
    char cmd[512];
    snprintf(cmd, sizeof cmd, "head -n 1 '%s/decay_rope/fig2.tsv' | grep 'dim=16 curves=b100\\[' | "
             "grep 'b500000_yarn2_64\\[base=500000 scaling=yarn factor=2 orig_ctx=64' | "
             "grep -q 'min_distance=-32 step=0.5 '", f->dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "head -n 1 '%s/decay_rope/scalings.tsv' | grep 'dim=16 curves=b100\\[' | "
             "grep 'b100_yarn2_64\\[' | grep -qv b500000", f->dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "head -n 1 '%s/decay_rope/scores_uniform.tsv' | grep -q 'dist=uniform seed=3'",
             f->dir);
    assert_int_equal(system(cmd), 0);
}

static void test_decay_bad_options(void **state)
{
    fixture *f = *state;
    expect_failure(f, "decay_bad1", 2, run_script(f, "decay", "decay_bad1", "--base", 0, NULL),
                   "fig2 scores bases");
    expect_failure(f, "decay_bad2", 2, run_script(f, "decay", "decay_bad2", "--base 10 --base 20", 0, NULL),
                   "fig2 scores bases");
    expect_failure(f, "decay_bad3", 2, run_script(f, "decay", "decay_bad3", "--scaling warp:3", 0, NULL),
                   "fig2 scores bases");
    expect_failure(f, "decay_bad4", 2, run_script(f, "decay", "decay_bad4", "--out x.tsv", 0, NULL),
                   "fig2 scores bases");
}

/* ---- scaling: masks, variant subsets, one length, precision -------------------------------- */
#define SC "--n-min 32 --n-max 128 --repeats 1 --warmup 0 --d 8 --m 8 --fit-min 32 --threads 1 "
#define SC_FIGS "time memory throughput crossover"

static void test_scaling_options(void **state)
{
    fixture *f = *state;
    ok_run(f, "scaling", "scaling_causal", SC "--masks causal", SC_FIGS, NULL);
    ok_run(f, "scaling", "scaling_both", SC "--variants softmax,performer,performer-rope-features",
           SC_FIGS, NULL);
    ok_run(f, "scaling", "scaling_exact_only", SC "--masks bidirectional --variants softmax", SC_FIGS, NULL);
    ok_run(f, "scaling", "scaling_one_length",
           "--n-min 64 --n-max 64 --repeats 1 --warmup 0 --d 8 --m 8 --threads 1 --variants performer,softmax",
           SC_FIGS, NULL);
    ok_run(f, "scaling", "scaling_double", SC "--precision double --variants softmax-rope,performer-rope-qk,"
           "linear-elu-rope-features,rpe-fft --masks causal,bidirectional", SC_FIGS, NULL);
}

/* ---- approx: kernels, projections, variants, one norm, one m, causal -------------------------- */
#define AP "--n 8 --d 4 --seeds 2 "
#define AP_FIGS "error_m rope_m error_norm"

static void test_approx_options(void **state)
{
    fixture *f = *state;
    ok_run(f, "approx", "approx_all", AP "--m-min 4 --m-max 16 --norms 1,2", AP_FIGS, NULL);
    ok_run(f, "approx", "approx_subset", AP "--m-min 4 --m-max 16 --norms 1,2 --kernels positive "
           "--projs iid --variants performer-rope-qk", AP_FIGS, NULL);
    ok_run(f, "approx", "approx_one_point", AP "--m-min 8 --m-max 8 --norms 1", AP_FIGS, NULL);
    ok_run(f, "approx", "approx_causal", AP "--m-min 4 --m-max 8 --norms 2,3 --causal "
           "--kernels trig,hyperbolic --projs orthogonal", AP_FIGS, NULL);
}

/* ---- pattern: encoding subsets ---------------------------------------------------------------- */
#define PA "--n 16 --d 8 --m 8 --draws 8 --checks 1 "

static void test_pattern_options(void **state)
{
    fixture *f = *state;
    ok_run(f, "pattern", "pattern_all", PA, "pattern pattern_score", NULL);
    ok_run(f, "pattern", "pattern_rope", PA "--encodings rope", "pattern pattern_score", NULL);
    ok_run(f, "pattern", "pattern_linear", PA "--encodings linear-rope-eq19,rpe-fft",
           "pattern pattern_score", NULL);
    ok_run(f, "pattern", "pattern_four", PA "--encodings none,sinusoidal,t5,alibi --shift 7",
           "pattern pattern_score", NULL);
}

/* ---- a gnuplot failure leaves no figure set ----------------------------------------------- */
static void test_gnuplot_failure(void **state)
{
    fixture *f = *state;
    /* decay draws three figures with three gnuplot runs: the second fails */
    expect_failure(f, "fail_decay", 0,
                   run_script(f, "decay", "fail_decay", "--draws 20 --max-distance 16", 2, NULL),
                   "fig2 scores bases");
    /* a complete set first, then a redraw whose (only) gnuplot run fails: the older figures go
     * too, so no set is left that does not belong to the table */
    ok_run(f, "scaling", "fail_scaling", SC "--variants softmax,performer --masks causal", SC_FIGS, NULL);
    expect_failure(f, "fail_scaling", 0,
                   run_script(f, "scaling", "fail_scaling", "", 1, "PLOT_ONLY=1"), SC_FIGS);
    expect_failure(f, "fail_approx", 0,
                   run_script(f, "approx", "fail_approx", AP "--m-min 4 --m-max 8 --norms 1", 1, NULL),
                   AP_FIGS);
    expect_failure(f, "fail_pattern", 0,
                   run_script(f, "pattern", "fail_pattern", PA "--encodings rope", 1, NULL),
                   "pattern pattern_score");
    /* the shim is really on the path: without it the same run succeeds */
    ok_run(f, "pattern", "fail_pattern", PA "--encodings rope", "pattern pattern_score", NULL);
}

/* ---- figures behind links: the link stays and its target gets the figure ---------------------- */
static void test_symlinked_figures(void **state)
{
    fixture *f = *state;
    char cmd[1024], path[256];
    /* pattern.png links to a file elsewhere, pattern.svg is a dangling link */
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/elsewhere' '%s/linked' && echo old > '%s/elsewhere/p.png' && "
             "ln -s ../elsewhere/p.png '%s/linked/pattern.png' && ln -s ../elsewhere/p.svg '%s/linked/pattern.svg'",
             f->dir, f->dir, f->dir, f->dir, f->dir);
    assert_int_equal(system(cmd), 0);
    ok_run(f, "pattern", "linked", PA "--encodings rope", "pattern pattern_score", NULL);
    struct stat st;
    snprintf(path, sizeof path, "%s/linked/pattern.png", f->dir);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    snprintf(path, sizeof path, "%s/linked/pattern.svg", f->dir);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_true(has_file(f, "elsewhere", "p.svg"));
    /* the target now holds the PNG, and no temporary is left beside it */
    snprintf(cmd, sizeof cmd, "head -c 4 '%s/elsewhere/p.png' | grep -q PNG && "
             "[ $(ls -A '%s/elsewhere' | wc -l) -eq 2 ]", f->dir, f->dir);
    assert_int_equal(system(cmd), 0);
    /* a failed redraw removes the regular figures but leaves the links and their targets */
    expect_failure(f, "linked", 0, run_script(f, "pattern", "linked", PA "--encodings rope", 1, NULL),
                   "pattern_score");
    snprintf(path, sizeof path, "%s/linked/pattern.png", f->dir);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_true(has_file(f, "elsewhere", "p.png"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decay_options),
        cmocka_unit_test(test_decay_bad_options),
        cmocka_unit_test(test_scaling_options),
        cmocka_unit_test(test_approx_options),
        cmocka_unit_test(test_pattern_options),
        cmocka_unit_test(test_gnuplot_failure),
        cmocka_unit_test(test_symlinked_figures),
    };
    return cmocka_run_group_tests_name("plots", tests, setup, teardown);
}
