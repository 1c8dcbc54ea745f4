/* ropekit-mpi scaling | approx | train (issue 18, distributed sweeps) under `mpirun --oversubscribe`
 * (tests/run_cli.h: run_mpi), against the single-process ropekit on the same options:
 *   approx, P = 1, 2, 3: the table and the standard output are the single-process ones byte
 *     for byte, but for the lines that name the time and P ('# run ', '# mpi: ');
 *   scaling, P = 2, 3: the same rows (keys, status, d, m, threads) and configuration line;
 *     a point skipped on another rank is reported on rank 0's standard output;
 *   resume: a single-process table cut mid-row (and one kept row altered) completed by
 *     3 ranks: the kept rows stay as they are, only the missing ones are computed;
 *   failures: a rank failing mid-sweep (test hook; rank 1 in approx, rank 0 in scaling, which
 *     tells the other rank to stop) ends every rank with its one line and status 2,
 *     the table keeps only complete rows (approx: the first ones of the single-process table),
 *     no summary, and --resume completes it; a killed rank ends the job; an unwritable --out
 *     and a bad option: one line, status 2, no table.
 * One OpenMP thread per rank (--threads 1 for both commands, so the '# machine:' lines match). */
#include "check.h"
#include "run_cli.h"
#include "tsv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define APPROX "approx", "--variants", "performer,performer-rope-features", "--kernels", \
    "positive,trig", "--m-min", "8", "--m-max", "32", "--norms", "1,2", "--n", "24", "--d", "8", \
    "--seeds", "3", "--threads", "1"
#define APPROX_ROWS 48     /* variants x kernels x projections x m x norms */
#define SCALING "scaling", "--variants", "softmax,performer,linear-elu", "--n-min", "16", \
    "--n-max", "64", "--d", "8", "--m", "16", "--repeats", "2", "--warmup", "0", \
    "--max-seconds", "100", "--fit-min", "16", "--threads", "1"

static char dir[256];
static run_cli_result R;
static char *ref_out;      /* the single-process approx run's stdout; its table is ref.tsv */
static const char *const varying[] = { "# run ", "# mpi: ", NULL };

static const char *path(const char *name)
{
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static int mp(int P, const char *const *args, const char *const *env)
{
    return run_mpi(P, args, env, dir, 60.0, &R);
}

static void mp_ok(int P, const char *const *args)
{
    if (mp(P, args, NULL) != 0 || R.err[0])
        fail_msg("mpirun -np %d ropekit-mpi %s: exit %d, stderr: %s", P, args[0], R.code, R.err);
}

static void one_ok(const char *const *args)
{
    if (run_cli(args, dir, 60.0, &R) != 0 || R.err[0])
        fail_msg("ropekit %s: exit %d, stderr: %s", args[0], R.code, R.err);
}

/* Exactly one line on stderr, starting with `want`. */
static void one_line(const char *want)
{
    if (strncmp(R.err, want, strlen(want)) != 0 || strchr(R.err, '\n') != R.err + strlen(R.err) - 1)
        fail_msg("expected one line starting '%s', got: %s", want, R.err);
}

static void assert_same_without_varying(const char *got, const char *want, const char *what)
{
    char *g = tsv_without(got, varying), *w = tsv_without(want, varying);
    if (strcmp(g, w) != 0) fail_msg("%s differs:\n%s\n--- single process ---\n%s", what, g, w);
    free(g);
    free(w);
}

/* The table's rows (header included) are the first rows of the single-process table. */
static void assert_rows_prefix(const char *name)
{
    char *t = tsv_slurp(path(name), NULL), *ref = tsv_slurp(path("ref.tsv"), NULL);
    char *rows = tsv_filter(t, NULL), *want = tsv_filter(ref, NULL);
    assert_true(t[strlen(t) - 1] == '\n');                 /* no torn line */
    assert_null(strstr(t, "# summary"));                   /* no summary of a partial run */
    if (strncmp(rows, want, strlen(rows)) != 0 || tsv_count_rows(t) >= APPROX_ROWS)
        fail_msg("%s: not a proper prefix of the single-process rows:\n%s", name, rows);
    free(t);
    free(ref);
    free(rows);
    free(want);
}

static int setup(void **state)
{
    (void)state;
    if (run_mpi_dir(dir, sizeof dir, "rk_mpi_sweeps")) return -1;
    const char *a[] = { APPROX, "--out", "ref.tsv", NULL };
    if (run_cli(a, dir, 60.0, &R) != 0) {
        fprintf(stderr, "ropekit approx failed: %s", R.err);
        return -1;
    }
    ref_out = strdup(R.out);
    return ref_out ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    free(ref_out);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* approx over 1, 2, 3 ranks: the single-process table and output, byte for byte. */
static void test_approx_bytes(void **state)
{
    (void)state;
    char *ref = tsv_slurp(path("ref.tsv"), NULL);
    assert_int_equal(tsv_count_rows(ref), APPROX_ROWS);
    for (int P = 1; P <= 3; P++) {
        char out[32], mpi[64];
        snprintf(out, sizeof out, "p%d.tsv", P);
        const char *a[] = { APPROX, "--out", out, NULL };
        mp_ok(P, a);
        char *t = tsv_slurp(path(out), NULL);
        assert_same_without_varying(t, ref, "the table");
        assert_same_without_varying(R.out, ref_out, "the standard output");
        snprintf(mpi, sizeof mpi, "\n# mpi: ranks=%d nodes=1 ", P);
        assert_non_null(strstr(t, mpi));
        assert_non_null(strstr(R.out, mpi + 1));
        free(t);
    }
    free(ref);
}

/* scaling over 2 and 3 ranks: the single-process rows and configuration; a resumed table; a
 * point skipped on rank 1 reported by rank 0. */
static void test_scaling(void **state)
{
    (void)state;
    const char *a[] = { SCALING, "--out", "sref.tsv", NULL };
    one_ok(a);
    char *ref = tsv_slurp(path("sref.tsv"), NULL);
    char *want = tsv_keys(ref, 7), *want_cfg = tsv_filter(ref, "# ropekit scaling");
    assert_int_equal(tsv_count_rows(ref), 3 * 2 * 3);
    for (int P = 2; P <= 3; P++) {
        const char *name = P == 2 ? "s2.tsv" : "s3.tsv";
        const char *b[] = { SCALING, "--out", name, NULL };
        mp_ok(P, b);
        char *t = tsv_slurp(path(name), NULL);
        char *got = tsv_keys(t, 7), *cfg = tsv_filter(t, "# ropekit scaling");
        assert_string_equal(got, want);
        assert_string_equal(cfg, want_cfg);
        assert_non_null(strstr(t, P == 2 ? "\n# mpi: ranks=2 " : "\n# mpi: ranks=3 "));
        assert_non_null(strstr(R.out, "\nlinear-elu causal: exponent = "));
        free(t);
        free(got);
        free(cfg);
    }
    /* resume a single-process table cut mid-series */
    tsv_spit(path("spart.tsv"), ref, tsv_offset_after_rows(ref, 4, 0));
    const char *c[] = { SCALING, "--out", "spart.tsv", "--resume", NULL };
    mp_ok(3, c);
    char *t = tsv_slurp(path("spart.tsv"), NULL), *got = tsv_keys(t, 7);
    assert_string_equal(got, want);
    char *rows = tsv_filter(t, NULL), *ref_rows = tsv_filter(ref, NULL);
    size_t kept = 0;
    for (int lines = 0; ref_rows[kept] && lines < 5; kept++) lines += ref_rows[kept] == '\n';
    assert_memory_equal(rows, ref_rows, kept);            /* the kept rows, timings included */
    free(t);
    free(got);
    free(rows);
    free(ref_rows);
    /* two series on two ranks, each with a point over the cap: rank 0 reports both */
    const char *d[] = { "scaling", "--variants", "rpe-fft", "--n-min", "16", "--n-max", "32",
                        "--d", "8", "--m", "8", "--repeats", "1", "--warmup", "0",
                        "--max-seconds", "1e-12", "--threads", "1", NULL };
    mp_ok(2, d);
    assert_non_null(strstr(R.out, "\nskipped rpe-fft bidirectional n=32 (predicted "));
    assert_non_null(strstr(R.out, "\nskipped rpe-fft causal n=32 (predicted "));
    free(ref);
    free(want);
    free(want_cfg);
}

/* A single-process table cut one byte into its sixth row, its third row altered, completed
 * by 3 ranks: the kept rows as they were, the torn one and the rest computed. */
static void test_approx_resume(void **state)
{
    (void)state;
    char *ref = tsv_slurp(path("ref.tsv"), NULL);
    size_t cut = tsv_offset_after_rows(ref, 5, 1), third = tsv_offset_after_rows(ref, 2, 0);
    char *part = strdup(ref);
    assert_non_null(part);
    char *end = strchr(part + third, '\n');
    assert_true(end[-1] == '0' && end[-2] == '\t');       /* nonfinite = 0: make it 7 */
    end[-1] = '7';
    tsv_spit(path("apart.tsv"), part, cut);
    const char *a[] = { APPROX, "--out", "apart.tsv", "--resume", NULL };
    mp_ok(3, a);
    assert_non_null(strstr(R.out, "apart.tsv: 5 finished rows kept, a torn last line dropped"));
    char *t = tsv_slurp(path("apart.tsv"), NULL);
    char *rows = tsv_filter(t, NULL), *want = tsv_filter(part, NULL);
    assert_string_equal(rows, want);
    char *sum = tsv_filter(t, "# summary"), *want_sum = tsv_filter(ref, "# summary");
    assert_string_equal(sum, want_sum);                   /* nonfinite is not summarised */
    free(t);
    free(rows);
    free(want);
    free(sum);
    free(want_sum);
    free(part);
    free(ref);
}

static void test_failures(void **state)
{
    (void)state;
    /* rank 1 fails at its second unit: one line from it, complete rows only, then resume */
    const char *a[] = { APPROX, "--out", "f.tsv", NULL };
    const char *fail_env[] = { "ROPEKIT_MPI_FAIL_RANK=1", "ROPEKIT_MPI_FAIL_AT=unit1", NULL };
    assert_int_equal(mp(3, a, fail_env), 2);
    one_line("ropekit-mpi approx: [rank 1] test failure at unit1 (ROPEKIT_MPI_FAIL_RANK)");
    assert_rows_prefix("f.tsv");
    const char *b[] = { APPROX, "--out", "f.tsv", "--resume", NULL };
    mp_ok(2, b);
    tsv_assert_same_rows(path("f.tsv"), path("ref.tsv"));

    /* rank 0 fails before its second (variant, mask) series: rank 1 is told to stop (at its
     * next point, if it has not finished by then) */
    const char *sc[] = { SCALING, "--out", "fs.tsv", NULL };
    const char *fail0[] = { "ROPEKIT_MPI_FAIL_RANK=0", "ROPEKIT_MPI_FAIL_AT=unit1", NULL };
    assert_int_equal(mp(2, sc, fail0), 2);
    one_line("ropekit-mpi scaling: test failure at unit1 (ROPEKIT_MPI_FAIL_RANK)");
    char *fs = tsv_slurp(path("fs.tsv"), NULL);
    assert_true(fs[strlen(fs) - 1] == '\n');
    assert_null(strstr(fs, "# summary"));
    assert_true(tsv_count_rows(fs) < 3 * 2 * 3);
    free(fs);
    const char *sr[] = { SCALING, "--out", "fs.tsv", "--resume", NULL };
    mp_ok(3, sr);
    fs = tsv_slurp(path("fs.tsv"), NULL);
    assert_int_equal(tsv_count_rows(fs), 3 * 2 * 3);
    free(fs);

    /* rank 2 killed before its first unit: the job ends with an error, complete rows only */
    const char *k[] = { APPROX, "--out", "k.tsv", NULL };
    const char *kill_env[] = { "ROPEKIT_MPI_KILL_RANK=2", "ROPEKIT_MPI_KILL_AT=unit0", NULL };
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = mp(3, k, kill_env);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (rc == 0 || !(secs < 45.0))
        fail_msg("a killed rank: exit %d after %.1f s (expected an error exit well within the "
                 "time limit)", rc, secs);
    assert_rows_prefix("k.tsv");

    /* an --out no rank can write, a bad option: one line, status 2, no table */
    tsv_spit(path("afile"), "x", 1);
    const char *u[] = { APPROX, "--out", "afile/x.tsv", NULL };
    assert_int_equal(mp(3, u, NULL), 2);
    one_line("ropekit-mpi approx: --out: cannot create a file next to 'afile/x.tsv'");
    const char *o[] = { "approx", "--kernels", "gauss", "--out", "bad.tsv", NULL };
    assert_int_equal(mp(2, o, NULL), 2);
    one_line("ropekit-mpi approx: --kernels: unknown name 'gauss' (expected: positive, "
             "hyperbolic, trig)");
    assert_int_equal(access(path("bad.tsv"), F_OK), -1);
}

/* train --compare over 3 ranks, each rank > 0 in a directory of its own (as on nodes that do
 * not share rank 0's file system): the single-process report (claims, curves, paired
 * differences) and every final checkpoint in DIR/ckpt, bit for bit; a rank failing at its
 * second run (of 2 ranks): one line, status 2, then --resume over 3 ranks completes the same report; plain
 * train (no --compare) and --jobs are refused. */
#define TRAIN "train", "--compare", "softmax,softmax-rope,performer", "--seeds", "2", "--task", \
    "shift:2:8", "--ctx", "16", "--d-model", "16", "--heads", "2", "--layers", "1", "--batch", \
    "4", "--steps", "20", "--eval-every", "10", "--val-tokens", "64", "--threads", "1"

static void assert_same_file(const char *a, const char *b, int drop_varying)
{
    size_t la, lb;
    char *x = tsv_slurp(path(a), &la), *y = tsv_slurp(path(b), &lb);
    if (drop_varying) assert_same_without_varying(x, y, a);
    else if (la != lb || memcmp(x, y, la) != 0) fail_msg("%s and %s differ", a, b);
    free(x);
    free(y);
}

static void assert_same_report(const char *d)
{
    static const char *const report[] = { "claims.tsv", "curves.tsv", "paired.tsv",
                                          "paired_seeds.tsv" };
    static const char *const ckpt[] = { "softmax", "softmax-rope", "performer" };
    char a[64], b[64];
    for (size_t i = 0; i < sizeof report / sizeof report[0]; i++) {
        snprintf(a, sizeof a, "%s/%s", d, report[i]);
        snprintf(b, sizeof b, "t1/%s", report[i]);
        assert_same_file(a, b, 1);
    }
    for (size_t i = 0; i < 3; i++)
        for (int seed = 1; seed <= 2; seed++) {
            snprintf(a, sizeof a, "%s/ckpt/%s-s%d.ckpt", d, ckpt[i], seed);
            snprintf(b, sizeof b, "t1/ckpt/%s-s%d.ckpt", ckpt[i], seed);
            assert_same_file(a, b, 0);
        }
}

static void test_train_compare(void **state)
{
    (void)state;
    const char *one[] = { TRAIN, "--dir", "t1", NULL };
    one_ok(one);
    const char *a[] = { TRAIN, "--dir", "t3", NULL };
    const char *priv[] = { "ROPEKIT_MPI_PRIVATE_DIRS=1", NULL };
    if (mp(3, a, priv) != 0 || R.err[0])
        fail_msg("train over 3 ranks: exit %d, stderr: %s", R.code, R.err);
    assert_non_null(strstr(R.out, "claim: RoFormer trains faster than absolute positions: "));
    assert_same_report("t3");
    assert_int_equal(access(path("rank1/t3/ckpt"), F_OK), 0);   /* rank 1 trained in its own */

    const char *f[] = { TRAIN, "--dir", "tf", NULL };
    const char *fail_env[] = { "ROPEKIT_MPI_FAIL_RANK=1", "ROPEKIT_MPI_FAIL_AT=unit1", NULL };
    assert_int_equal(mp(2, f, fail_env), 2);
    one_line("ropekit-mpi train: [rank 1] test failure at unit1 (ROPEKIT_MPI_FAIL_RANK)");
    assert_int_equal(access(path("tf/claims.tsv"), F_OK), -1);  /* no report of a partial run */
    const char *r[] = { TRAIN, "--dir", "tf", "--resume", NULL };
    mp_ok(3, r);
    assert_same_report("tf");

    const char *plain[] = { "train", "--task", "shift:2:8", "--steps", "2", NULL };
    assert_int_equal(mp(2, plain, NULL), 2);
    one_line("ropekit-mpi train: only --compare runs over the ranks");
    const char *jobs[] = { TRAIN, "--dir", "tj", "--jobs", "2", NULL };
    assert_int_equal(mp(2, jobs, NULL), 2);
    one_line("ropekit-mpi train: --jobs: under mpirun each rank trains one run at a time");
    assert_int_equal(access(path("tj"), F_OK), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_approx_bytes),
        cmocka_unit_test(test_scaling),
        cmocka_unit_test(test_approx_resume),
        cmocka_unit_test(test_failures),
        cmocka_unit_test(test_train_compare),
    };
    return cmocka_run_group_tests_name("mpi_sweeps", tests, setup, teardown);
}
