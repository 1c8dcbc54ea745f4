/* `ropekit attend --dout ... --dq --dk --dv`: the gradients from the command line, bit for bit
 * those of the library on the same data; all outputs or none; the option errors; an output
 * never replacing an input. */
#include "check.h"
#include "run_cli.h"

#include <dirent.h>
#include <gsl/gsl_randist.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];
static run_cli_result R;

static const char *P(const char *name)
{
    static char buf[8][600];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/rk_cli_grad_XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') unlink(P(e->d_name));
    if (d) closedir(d);
    rmdir(dir);
    return 0;
}

static int exists(const char *path) { struct stat st; return stat(path, &st) == 0; }

static rk_array randarr(rk_dtype dt, int nd, const size_t *shape, unsigned long seed)
{
    rk_array a;
    assert_rk_ok(rk_array_alloc(&a, dt, nd, shape));
    gsl_rng *r = rk_test_rng(seed);
    for (size_t i = 0; i < a.count; i++) {
        double x = gsl_ran_gaussian_ziggurat(r, 1.0);
        if (dt == RK_F32) ((float *)a.data)[i] = (float)x;
        else ((double *)a.data)[i] = x;
    }
    gsl_rng_free(r);
    return a;
}

static int run(const char *const *args)
{
    return run_cli(args, NULL, 120, &R);
}

/* The library's gradients of every (h) slice of (h, n, d) arrays, to compare with the CLI's. */
static void library_grads(rk_attn_config cfg, const rk_array *q, const rk_array *k,
                          const rk_array *v, const rk_array *g, rk_array *dq, rk_array *dk,
                          rk_array *dv)
{
    const size_t h = q->shape[0], nq = q->shape[1], d = q->shape[2], nkv = k->shape[1],
                 dvw = v->shape[2];
    cfg.n_q = nq, cfg.n_kv = nkv, cfg.d = d, cfg.d_v = dvw;
    rk_attn *p;
    assert_rk_ok(rk_attn_create(&p, &cfg));
    size_t sq[3] = { h, nq, d }, sk[3] = { h, nkv, d }, sv[3] = { h, nkv, dvw }, so[3] = { h, nq, dvw };
    rk_array out;
    assert_rk_ok(rk_array_alloc(&out, q->dtype, 3, so));
    assert_rk_ok(rk_array_alloc(dq, q->dtype, 3, sq));
    assert_rk_ok(rk_array_alloc(dk, q->dtype, 3, sk));
    assert_rk_ok(rk_array_alloc(dv, q->dtype, 3, sv));
    size_t n = rk_attn_saved_len(p);
    void *saved = calloc(n ? n : 1, 8);
    for (size_t s = 0; s < h; s++) {
        if (q->dtype == RK_F32) {
#define V(a, r, c) rk_mat_view((float *)(a)->data + s * (r) * (c), r, c, c)
            rk_mat qs = V(q, nq, d), ks = V(k, nkv, d), vs = V(v, nkv, dvw), os = V(&out, nq, dvw);
            rk_mat gs = V(g, nq, dvw), a = V(dq, nq, d), b = V(dk, nkv, d), c = V(dv, nkv, dvw);
#undef V
            assert_rk_ok(rk_attn_forward(p, &qs, &ks, &vs, &os, RK_ALL_KEYS, saved));
            assert_rk_ok(rk_attn_backward(p, &qs, &ks, &vs, &os, saved, &gs, &a, &b, &c, RK_ALL_KEYS));
        } else {
#define V(a, r, c) rk_matd_view((double *)(a)->data + s * (r) * (c), r, c, c)
            rk_matd qs = V(q, nq, d), ks = V(k, nkv, d), vs = V(v, nkv, dvw), os = V(&out, nq, dvw);
            rk_matd gs = V(g, nq, dvw), a = V(dq, nq, d), b = V(dk, nkv, d), c = V(dv, nkv, dvw);
#undef V
            assert_rk_ok(rk_attn_forward_d(p, &qs, &ks, &vs, &os, RK_ALL_KEYS, saved));
            assert_rk_ok(rk_attn_backward_d(p, &qs, &ks, &vs, &os, saved, &gs, &a, &b, &c,
                                            RK_ALL_KEYS));
        }
    }
    free(saved);
    rk_array_free(&out);
    rk_attn_destroy(p);
}

static void assert_same_file_bits(const char *path, const rk_array *want)
{
    rk_array got;
    assert_rk_ok(rk_npy_load(path, &got));
    assert_int_equal(got.dtype, want->dtype);
    assert_int_equal(got.count, want->count);
    assert_memory_equal(got.data, want->data, got.count * (got.dtype == RK_F32 ? 4 : 8));
    rk_array_free(&got);
}

static void test_matches_library(void **state)
{
    (void)state;
    const rk_dtype dts[2] = { RK_F32, RK_F64 };
    for (int t = 0; t < 2; t++) {
        size_t sq[3] = { 2, 9, 6 }, sk[3] = { 2, 11, 6 }, sv[3] = { 2, 11, 5 }, so[3] = { 2, 9, 5 };
        rk_array q = randarr(dts[t], 3, sq, 1), k = randarr(dts[t], 3, sk, 2);
        rk_array v = randarr(dts[t], 3, sv, 3), g = randarr(dts[t], 3, so, 4);
        assert_rk_ok(rk_npy_save(P("q.npy"), &q));
        assert_rk_ok(rk_npy_save(P("k.npy"), &k));
        assert_rk_ok(rk_npy_save(P("v.npy"), &v));
        assert_rk_ok(rk_npy_save(P("g.npy"), &g));
        const char *args[] = { "attend", "--variant", "softmax", "--rope", "qk", "--causal",
                               "--q", P("q.npy"), "--k", P("k.npy"), "--v", P("v.npy"),
                               "--out", P("o.npy"), "--dout", P("g.npy"), "--dq", P("dq.npy"),
                               "--dk", P("dk.npy"), "--dv", P("dv.npy"), "--threads", "2", NULL };
        if (run(args) != 0) fail_msg("attend --dout: %s", R.err);
        rk_array dq, dk, dv;
        rk_attn_config cfg = { .kind = RK_SOFTMAX, .rope = RK_ROPE_QK, .causal = 1, .nthreads = 2 };
        cfg.rope_cfg.base = 10000.0;
        library_grads(cfg, &q, &k, &v, &g, &dq, &dk, &dv);
        assert_same_file_bits(P("dq.npy"), &dq);
        assert_same_file_bits(P("dk.npy"), &dk);
        assert_same_file_bits(P("dv.npy"), &dv);
        rk_array_free(&dq); rk_array_free(&dk); rk_array_free(&dv);
        /* only --dv asked: only it (and --out) written */
        unlink(P("dq.npy")); unlink(P("dk.npy"));
        const char *args2[] = { "attend", "--variant", "uniform", "--q", P("q.npy"), "--k",
                                P("k.npy"), "--v", P("v.npy"), "--out", P("o.npy"), "--dout",
                                P("g.npy"), "--dv", P("dv.npy"), NULL };
        if (run(args2) != 0) fail_msg("attend uniform --dv: %s", R.err);
        assert_false(exists(P("dq.npy")));
        rk_attn_config ucfg = { .kind = RK_UNIFORM };
        library_grads(ucfg, &q, &k, &v, &g, &dq, &dk, &dv);
        assert_same_file_bits(P("dv.npy"), &dv);
        rk_array_free(&dq); rk_array_free(&dk); rk_array_free(&dv);
        rk_array_free(&q); rk_array_free(&k); rk_array_free(&v); rk_array_free(&g);
    }
}

static void expect_fail(const char *const *args, const char *needle)
{
    int rc = run(args);
    if (rc != 2) fail_msg("exit %d, expected 2: %s", rc, R.err);
    if (!strstr(R.err, needle)) fail_msg("stderr lacks '%s': %s", needle, R.err);
    assert_int_equal(R.out[0], '\0');
}

static void test_errors(void **state)
{
    (void)state;
    size_t sq[2] = { 5, 4 }, so[2] = { 5, 3 }, sv[2] = { 5, 3 };
    rk_array q = randarr(RK_F32, 2, sq, 5), v = randarr(RK_F32, 2, sv, 6), g = randarr(RK_F32, 2, so, 7);
    rk_array gd = randarr(RK_F64, 2, so, 8);
    assert_rk_ok(rk_npy_save(P("q.npy"), &q));
    assert_rk_ok(rk_npy_save(P("v.npy"), &v));
    assert_rk_ok(rk_npy_save(P("g.npy"), &g));
    assert_rk_ok(rk_npy_save(P("gd.npy"), &gd));
    assert_rk_ok(rk_npy_save(P("gw.npy"), &q));     /* wrong shape: d columns */
    unlink(P("o.npy"));
#define ATT(...) { "attend", "--variant", "softmax", "--q", P("q.npy"), "--k", P("q.npy"), \
                   "--v", P("v.npy"), "--out", P("o.npy"), __VA_ARGS__, NULL }
    const char *a1[] = ATT("--dq", P("dq.npy"));
    expect_fail(a1, "--dq needs --dout");
    const char *a2[] = ATT("--dout", P("g.npy"));
    expect_fail(a2, "name at least one of --dq, --dk, --dv");
    const char *a3[] = ATT("--dout", P("gw.npy"), "--dq", P("dq.npy"));
    expect_fail(a3, "has shape (5, 4)");
    const char *a4[] = ATT("--dout", P("gd.npy"), "--dq", P("dq.npy"));
    expect_fail(a4, "it must have the output's dtype");
    const char *a5[] = ATT("--dout", P("g.npy"), "--dq", P("q.npy"));
    expect_fail(a5, "--dq and --q name the same file");
    const char *a6[] = ATT("--dout", P("g.npy"), "--dq", P("x.npy"), "--dk", P("x.npy"));
    expect_fail(a6, "--dq and --dk name the same file");
    const char *a7[] = { "attend", "--variant", "rpe-fft", "--q", P("q.npy"), "--k", P("q.npy"),
                         "--v", P("v.npy"), "--out", P("o.npy"), "--dout", P("g.npy"), "--dq",
                         P("dq.npy"), NULL };
    expect_fail(a7, "rpe-fft has no backward");
    /* a gradient that cannot be written: no output at all, not even --out */
    const char *a8[] = ATT("--dout", P("g.npy"), "--dq", P("dq.npy"), "--dk", P("nodir/dk.npy"));
    expect_fail(a8, "--dk");
    assert_false(exists(P("o.npy")));
    assert_false(exists(P("dq.npy")));
    /* --out naming an input is refused too (it would replace the input) */
    const char *a9[] = { "attend", "--variant", "softmax", "--q", P("q.npy"), "--k", P("q.npy"),
                         "--v", P("v.npy"), "--out", P("v.npy"), NULL };
    expect_fail(a9, "--out and --v name the same file");
    rk_array back;
    assert_rk_ok(rk_npy_load(P("v.npy"), &back));
    assert_memory_equal(back.data, v.data, v.count * sizeof(float));
    rk_array_free(&back);
#undef ATT
    rk_array_free(&q); rk_array_free(&v); rk_array_free(&g); rk_array_free(&gd);
}

/* --layout bnhd and --kv-heads: the (b, n, h, d) arrays give the transposes of the (b, h, n, d)
 * run, bit for bit, and grouped-query heads the library's batch result. */
static rk_array transpose_12(const rk_array *a)
{
    size_t sh[4] = { a->shape[0], a->shape[2], a->shape[1], a->shape[3] };
    rk_array t;
    assert_rk_ok(rk_array_alloc(&t, a->dtype, 4, sh));
    for (size_t b = 0; b < sh[0]; b++)
        for (size_t i = 0; i < a->shape[1]; i++)
            for (size_t j = 0; j < a->shape[2]; j++)
                for (size_t c = 0; c < sh[3]; c++) {
                    size_t src = ((b * a->shape[1] + i) * a->shape[2] + j) * sh[3] + c;
                    size_t dst = ((b * sh[1] + j) * sh[2] + i) * sh[3] + c;
                    ((float *)t.data)[dst] = ((float *)a->data)[src];
                }
    return t;
}

static void test_layout_and_kv_heads(void **state)
{
    (void)state;
    size_t sq[4] = { 2, 4, 7, 6 }, sk[4] = { 2, 2, 9, 6 }, sv[4] = { 2, 2, 9, 5 };
    rk_array q = randarr(RK_F32, 4, sq, 21), k = randarr(RK_F32, 4, sk, 22), v = randarr(RK_F32, 4, sv, 23);
    rk_array qt = transpose_12(&q), kt = transpose_12(&k), vt = transpose_12(&v);
    assert_rk_ok(rk_npy_save(P("q.npy"), &q));
    assert_rk_ok(rk_npy_save(P("k.npy"), &k));
    assert_rk_ok(rk_npy_save(P("v.npy"), &v));
    assert_rk_ok(rk_npy_save(P("qt.npy"), &qt));
    assert_rk_ok(rk_npy_save(P("kt.npy"), &kt));
    assert_rk_ok(rk_npy_save(P("vt.npy"), &vt));
    const char *a1[] = { "attend", "--variant", "softmax", "--causal", "--rope", "qk", "--kv-heads",
                         "2", "--q", P("q.npy"), "--k", P("k.npy"), "--v", P("v.npy"), "--out",
                         P("o.npy"), "--kv-len", "9,6", NULL };
    if (run(a1) != 0) fail_msg("attend --kv-heads: %s", R.err);
    const char *a2[] = { "attend", "--variant", "softmax", "--causal", "--rope", "qk", "--kv-heads",
                         "2", "--layout", "bnhd", "--q", P("qt.npy"), "--k", P("kt.npy"), "--v",
                         P("vt.npy"), "--out", P("ot.npy"), "--kv-len", "9,6", NULL };
    if (run(a2) != 0) fail_msg("attend --layout bnhd: %s", R.err);
    rk_array o, ot;
    assert_rk_ok(rk_npy_load(P("o.npy"), &o));
    assert_rk_ok(rk_npy_load(P("ot.npy"), &ot));
    rk_array back = transpose_12(&ot);
    assert_memory_equal(back.data, o.data, o.count * sizeof(float));
    /* the library's batch call on the same arrays */
    rk_attn_config c = { .kind = RK_SOFTMAX, .causal = 1, .rope = RK_ROPE_QK, .n_q = 7, .n_kv = 9,
                         .d = 6, .d_v = 5, .batch = 2, .heads = 4, .kv_heads = 2 };
    c.rope_cfg.base = 10000.0;
    rk_attn *p;
    assert_rk_ok(rk_attn_create(&p, &c));
    size_t so[4] = { 2, 4, 7, 5 };
    rk_array want;
    assert_rk_ok(rk_array_alloc(&want, RK_F32, 4, so));
    rk_tensor Q = rk_tensor_bhnd(q.data, 2, 4, 7, 6), K = rk_tensor_bhnd(k.data, 2, 2, 9, 6);
    rk_tensor V = rk_tensor_bhnd(v.data, 2, 2, 9, 5), O = rk_tensor_bhnd(want.data, 2, 4, 7, 5);
    size_t kvl[2] = { 9, 6 };
    assert_rk_ok(rk_attn_execute_batch(p, &Q, &K, &V, &O, kvl));
    assert_memory_equal(want.data, o.data, o.count * sizeof(float));
    rk_attn_destroy(p);
    /* refusals */
    const char *e1[] = { "attend", "--variant", "softmax", "--kv-heads", "3", "--q", P("q.npy"),
                         "--k", P("k.npy"), "--v", P("v.npy"), "--out", P("o2.npy"), NULL };
    expect_fail(e1, "--kv-heads 3 must divide the 4 query heads");
    const char *e2[] = { "attend", "--variant", "softmax", "--q", P("q.npy"), "--k", P("k.npy"),
                         "--v", P("v.npy"), "--out", P("o2.npy"), NULL };
    expect_fail(e2, "the leading axes must match");
    assert_false(exists(P("o2.npy")));
    rk_array *all[] = { &q, &k, &v, &qt, &kt, &vt, &o, &ot, &back, &want };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) rk_array_free(all[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_library),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_layout_and_kv_heads),
    };
    return cmocka_run_group_tests_name("cli gradients", tests, setup, teardown);
}
