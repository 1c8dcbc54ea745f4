/* ropekit-mpi (issue 18) under `mpirun --oversubscribe` with P = 1, 2, 3, 4 and n = 203 (not
 * divisible by any P > 1): the outputs against the single-process `ropekit attend`, the
 * tolerance stated here and in the README (softmax float32: |o_P - o_1| <= 4e-6 (1 + |o_1|);
 * gradients 2e-5 (1 + |g|); performer / linear 1e-5 (1 + |o|); float64 1e-12), P = 1 bit for
 * bit, the same bits on a second run, a causal leak test across ranks (the last rank's keys
 * and values changed: every earlier row's output keeps its bits), bad input on one rank (one
 * line naming the rank, exit 2, no output), one rank killed (the job ends, not hangs, with no
 * output) and refused options. As root the Open MPI variables OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM)
 * are set for mpirun; one OpenMP thread per rank (two cores shared by up to four ranks). */
#include "check.h"
#include "run_cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


#define N 203
static char dir[256];

static const char *path(const char *name)
{
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void save_rand(const char *name, rk_dtype t, size_t h, size_t n, size_t w,
                      unsigned long seed)
{
    rk_array a = { 0 };
    size_t shape[3] = { h, n, w };
    assert_rk_ok(rk_array_alloc(&a, t, 3, shape));
    gsl_rng *r = rk_test_rng(seed);
    for (size_t i = 0; i < a.count; i++) {
        double x = 0.0;
        for (int j = 0; j < 4; j++) x += gsl_rng_uniform(r) - 0.5;
        if (t == RK_F32) ((float *)a.data)[i] = (float)x;
        else ((double *)a.data)[i] = x;
    }
    gsl_rng_free(r);
    assert_rk_ok(rk_npy_save(path(name), &a));
    rk_array_free(&a);
}

/* mpirun -np P ropekit-mpi args... (tests/run_cli.h), extra_env (one NAME=value) or NULL. */
static int mpirun(int P, const char *const *args, const char *extra_env, run_cli_result *r)
{
    const char *env[] = { extra_env, NULL };
    return run_mpi(P, args, env, dir, 60.0, r);
}

static rk_array load(const char *name)
{
    rk_array a = { 0 };
    assert_rk_ok(rk_npy_load(path(name), &a));
    return a;
}

static double el(const rk_array *a, size_t i)
{
    return a->dtype == RK_F64 ? ((double *)a->data)[i] : (double)((float *)a->data)[i];
}

/* |a - b| <= tol (1 + |b|) everywhere; returns the worst ratio. */
static double rel_diff(const char *an, const char *bn)
{
    rk_array a = load(an), b = load(bn);
    assert_int_equal(a.count, b.count);
    double w = 0.0;
    for (size_t i = 0; i < a.count; i++) {
        double e = fabs(el(&a, i) - el(&b, i)) / (1.0 + fabs(el(&b, i)));
        if (!(e <= w)) w = e;
    }
    rk_array_free(&a);
    rk_array_free(&b);
    return w;
}

static int same_file(const char *an, const char *bn)
{
    rk_array a = load(an), b = load(bn);
    int same = a.count == b.count && a.dtype == b.dtype &&
               memcmp(a.data, b.data, a.count * (a.dtype == RK_F64 ? 8 : 4)) == 0;
    rk_array_free(&a);
    rk_array_free(&b);
    return same;
}

/* Rows [0, rows) of every head equal bit for bit (arrays (h, n, w)). */
static int same_rows(const char *an, const char *bn, size_t h, size_t n, size_t w, size_t rows)
{
    rk_array a = load(an), b = load(bn);
    int same = 1;
    for (size_t s = 0; s < h; s++)
        same &= memcmp((float *)a.data + s * n * w, (float *)b.data + s * n * w,
                       rows * w * sizeof(float)) == 0;
    rk_array_free(&a);
    rk_array_free(&b);
    return same;
}

static void run_ok(int P, const char *const *args)
{
    run_cli_result r;
    int rc = mpirun(P, args, NULL, &r);
    if (rc != 0) fail_msg("mpirun -np %d ropekit-mpi %s ... exited %d: %s", P, args[0], rc, r.err);
}

static void single(const char *const *args)
{
    run_cli_result r;
    if (run_cli(args, dir, 60.0, &r) != 0) fail_msg("ropekit %s failed: %s", args[0], r.err);
}

static int setup(void **state)
{
    (void)state;
    if (run_mpi_dir(dir, sizeof dir, "rk_mpi")) return -1;
    save_rand("q.npy", RK_F32, 2, N, 16, 1);
    save_rand("k.npy", RK_F32, 2, N, 16, 2);
    save_rand("v.npy", RK_F32, 2, N, 8, 3);
    save_rand("g.npy", RK_F32, 2, N, 8, 4);
    save_rand("k2.npy", RK_F32, 2, N, 16, 5);      /* the leak test's other keys */
    save_rand("qd.npy", RK_F64, 1, 130, 8, 6);
    save_rand("kd.npy", RK_F64, 1, 130, 8, 7);
    save_rand("vd.npy", RK_F64, 1, 130, 8, 8);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Softmax, causal, RoPE: P = 1 (bit for bit), 2, 3, 4 against one process. */
static void test_softmax_ring(void **state)
{
    (void)state;
    const char *ref[] = { "attend", "--variant", "softmax", "--causal", "--rope", "qk", "--q",
                          "q.npy", "--k", "k.npy", "--v", "v.npy", "--out", "ref.npy", NULL };
    single(ref);
    for (int P = 1; P <= 4; P++) {
        char out[32];
        snprintf(out, sizeof out, "o%d.npy", P);
        const char *a[] = { "attend", "--variant", "softmax", "--causal", "--rope", "qk", "--q",
                            "q.npy", "--k", "k.npy", "--v", "v.npy", "--out", out, NULL };
        run_ok(P, a);
        double e = rel_diff(out, "ref.npy");
        if (P == 1) assert_true(same_file(out, "ref.npy"));
        if (!(e <= 4e-6)) fail_msg("P = %d: output off by %g (1 + |o|)", P, e);
    }
}

/* Zigzag layout, every rank reading its own rows, the backward; twice: the same bits. */
static void test_zigzag_backward(void **state)
{
    (void)state;
    const char *ref[] = { "attend", "--variant", "softmax", "--causal", "--rope", "qk", "--q",
                          "q.npy", "--k", "k.npy", "--v", "v.npy", "--out", "rb.npy", "--dout",
                          "g.npy", "--dq", "dq.npy", "--dk", "dk.npy", "--dv", "dv.npy", NULL };
    single(ref);
    for (int t = 0; t < 2; t++) {
        char o[4][16];
        static const char *const nm[4] = { "zo", "zq", "zk", "zv" };
        for (int i = 0; i < 4; i++) snprintf(o[i], sizeof o[i], "%s%d.npy", nm[i], t);
        const char *a[] = { "attend", "--variant", "softmax", "--causal", "--rope", "qk", "--q",
                            "q.npy", "--k", "k.npy", "--v", "v.npy", "--out", o[0], "--dout",
                            "g.npy", "--dq", o[1], "--dk", o[2], "--dv", o[3], "--dist",
                            "zigzag", "--shard", NULL };
        run_ok(3, a);
        if (t == 0) {
            double e0 = rel_diff(o[0], "rb.npy"), e1 = rel_diff(o[1], "dq.npy");
            double e2 = rel_diff(o[2], "dk.npy"), e3 = rel_diff(o[3], "dv.npy");
            if (!(e0 <= 4e-6) || !(e1 <= 2e-5) || !(e2 <= 2e-5) || !(e3 <= 2e-5))
                fail_msg("zigzag P = 3: out %g, dq %g, dk %g, dv %g", e0, e1, e2, e3);
        } else {
            assert_true(same_file("zo0.npy", "zo1.npy"));
            assert_true(same_file("zq0.npy", "zq1.npy"));
            assert_true(same_file("zk0.npy", "zk1.npy"));
            assert_true(same_file("zv0.npy", "zv1.npy"));
        }
    }
}

/* FAVOR+ with eq. 19 (causal: MPI_Exscan) and linear attention (bidirectional: MPI_Allreduce). */
static void test_linear_scan(void **state)
{
    (void)state;
    const char *cases[][6] = {
        { "performer", "--rope", "features", "--causal", NULL, NULL },
        { "linear", "--causal", NULL, NULL, NULL, NULL },
        { "performer", "--kernel", "hyperbolic", NULL, NULL, NULL },
    };
    const int Ps[] = { 4, 2, 3 };
    for (int c = 0; c < 3; c++) {
        const char *a[24] = { "attend", "--variant" };
        int n = 2;
        for (int i = 0; cases[c][i]; i++) a[n++] = cases[c][i];
        const char *tail[] = { "--q", "q.npy", "--k", "k.npy", "--v", "v.npy", "--out", NULL };
        for (int i = 0; tail[i]; i++) a[n++] = tail[i];
        a[n] = "lref.npy";
        a[n + 1] = NULL;
        single(a);
        a[n] = "lmp.npy";
        run_ok(Ps[c], a);
        double e = rel_diff("lmp.npy", "lref.npy");
        if (!(e <= 1e-5)) fail_msg("%s over %d ranks: off by %g", cases[c][0], Ps[c], e);
    }
}

/* The last rank's keys and values change: rows before its block keep their bits (softmax ring
 * and the causal scan). P = 4, n = 203: rank 3 holds rows 152 .. 202. */
static void test_causal_leak(void **state)
{
    (void)state;
    /* k2 differs from k everywhere; make a k whose rows >= 152 come from k2 */
    rk_array k = load("k.npy"), k2 = load("k2.npy"), v = load("v.npy");
    for (size_t s = 0; s < 2; s++) {
        memcpy((float *)k.data + (s * N + 152) * 16, (float *)k2.data + (s * N + 152) * 16,
               (N - 152) * 16 * sizeof(float));
        for (size_t i = 152; i < N; i++)
            for (size_t c = 0; c < 8; c++) ((float *)v.data)[(s * N + i) * 8 + c] += 3.0f;
    }
    assert_rk_ok(rk_npy_save(path("kx.npy"), &k));
    assert_rk_ok(rk_npy_save(path("vx.npy"), &v));
    rk_array_free(&k);
    rk_array_free(&k2);
    rk_array_free(&v);
    static const char *const vars[2] = { "softmax", "performer" };
    for (int t = 0; t < 2; t++) {
        const char *a[] = { "attend", "--variant", vars[t], "--causal", "--q", "q.npy", "--k",
                            "k.npy", "--v", "v.npy", "--out", "la.npy", NULL };
        const char *b[] = { "attend", "--variant", vars[t], "--causal", "--q", "q.npy", "--k",
                            "kx.npy", "--v", "vx.npy", "--out", "lb.npy", NULL };
        run_ok(4, a);
        run_ok(4, b);
        if (!same_rows("la.npy", "lb.npy", 2, N, 8, 152))
            fail_msg("%s: a change in the last rank's keys reached earlier rows", vars[t]);
        assert_false(same_rows("la.npy", "lb.npy", 2, N, 8, 153));  /* row 152 sees them */
    }
}

/* float64 end to end. */
static void test_double(void **state)
{
    (void)state;
    const char *ref[] = { "attend", "--variant", "softmax", "--causal", "--rope", "qk", "--q",
                          "qd.npy", "--k", "kd.npy", "--v", "vd.npy", "--out", "dref.npy", NULL };
    single(ref);
    const char *a[] = { "attend", "--variant", "softmax", "--causal", "--rope", "qk", "--q",
                        "qd.npy", "--k", "kd.npy", "--v", "vd.npy", "--out", "dmp.npy", NULL };
    run_ok(2, a);
    double e = rel_diff("dmp.npy", "dref.npy");
    if (!(e <= 1e-12)) fail_msg("float64 over 2 ranks: off by %g", e);
}

/* Bad input on one rank, a killed rank, a refused option: one line, exit 2 (killed: the job
 * ends with an error), no output, within the time limit. */
static void test_failures(void **state)
{
    (void)state;
    rk_array q = load("q.npy");
    ((float *)q.data)[(1 * N + 150) * 16 + 3] = NAN;       /* head 1, row 150: rank 2 of 3 */
    assert_rk_ok(rk_npy_save(path("qn.npy"), &q));
    rk_array_free(&q);
    run_cli_result r;
    const char *a[] = { "attend", "--variant", "softmax", "--causal", "--q", "qn.npy", "--k",
                        "k.npy", "--v", "v.npy", "--out", "bad.npy", "--shard", NULL };
    assert_int_equal(mpirun(3, a, NULL, &r), 2);
    if (!strstr(r.err, "[rank 2]") || !strstr(r.err, "NaN") || !strstr(r.err, "row 150") ||
        strchr(r.err, '\n') != r.err + strlen(r.err) - 1)
        fail_msg("expected one line naming rank 2 and the NaN, got: %s", r.err);
    assert_int_equal(access(path("bad.npy"), F_OK), -1);

    const char *k[] = { "attend", "--variant", "softmax", "--causal", "--q", "q.npy", "--k",
                        "k.npy", "--v", "v.npy", "--out", "killed.npy", NULL };
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = mpirun(3, k, "ROPEKIT_MPI_KILL_RANK=1", &r);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    /* mpirun ends the job and exits 128 + 9 itself; our limit (60 s) would look the same */
    if (rc == 0 || !(secs < 45.0))
        fail_msg("a killed rank: exit %d after %.1f s (expected an error exit well within the "
                 "time limit)", rc, secs);
    assert_int_equal(access(path("killed.npy"), F_OK), -1);

    const char *o[] = { "attend", "--variant", "softmax", "--bias-kind", "alibi", "--q", "q.npy",
                        "--k", "k.npy", "--v", "v.npy", "--out", "opt.npy", NULL };
    assert_int_equal(mpirun(2, o, NULL, &r), 2);
    assert_non_null(strstr(r.err, "--bias-kind is not supported by ropekit-mpi"));
    assert_true(strchr(r.err, '\n') == r.err + strlen(r.err) - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_softmax_ring),
        cmocka_unit_test(test_zigzag_backward),
        cmocka_unit_test(test_linear_scan),
        cmocka_unit_test(test_causal_leak),
        cmocka_unit_test(test_double),
        cmocka_unit_test(test_failures),
    };
    return cmocka_run_group_tests_name("mpi", tests, setup, teardown);
}
