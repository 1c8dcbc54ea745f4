/* The `ropekit` command line, driven as a real process (RK_CLI_PATH) through fork + execv.
 * Inputs are written with rk_npy_save into a mkdtemp directory; outputs are compared bit for
 * bit with the library called directly on the same data (the CLI is a thin driver, so the bits
 * must agree). Every error class must exit 2 with one line on stderr naming the problem, and
 * must leave no file behind (nor touch an existing output). */
#include "check.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_randist.h>

#ifndef RK_CLI_PATH
#error "RK_CLI_PATH must name the ropekit binary (the Makefile defines it)"
#endif

/* ---- temporary directory: <base>/io holds captured stdout/stderr, <base>/d the arrays ---- */
static char base_dir[512], data_dir[600], out_file[640], err_file[640];

/* Path of `name` in the data directory; a ring of buffers so several can be live at once. */
static const char *P(const char *name)
{
    static char ring[32][768];
    static unsigned next;
    char *b = ring[next++ % 32];
    snprintf(b, sizeof ring[0], "%s/%s", data_dir, name);
    return b;
}

static void remove_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
}

static int dir_count(void)
{
    DIR *d = opendir(data_dir);
    if (!d) fail_msg("opendir %s: %s", data_dir, strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static int setup(void **state)
{
    (void)state;
    gsl_set_error_handler_off();
    const char *t = getenv("TMPDIR");
    snprintf(base_dir, sizeof base_dir, "%s/ropekit-cli-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(base_dir)) return -1;
    snprintf(data_dir, sizeof data_dir, "%s/d", base_dir);
    snprintf(out_file, sizeof out_file, "%s/stdout", base_dir);
    snprintf(err_file, sizeof err_file, "%s/stderr", base_dir);
    return mkdir(data_dir, 0700);
}

static int teardown(void **state)
{
    (void)state;
    remove_files(data_dir);
    rmdir(data_dir);
    remove_files(base_dir);
    rmdir(base_dir);
    return 0;
}

/* Each test starts with an empty data directory. */
static int clean(void **state)
{
    (void)state;
    remove_files(data_dir);
    return 0;
}

/* ---- running the binary ------------------------------------------------------------------ */
static struct { int code; char out[16384]; char err[16384]; } R;

static void slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = '\0';
    if (f) fclose(f);
}

/* Run the binary with the NULL-terminated args (after argv[0]): exit status in R.code (128 +
 * signal if killed), stdout and stderr in R.out / R.err. */
static int run_v(const char *const *args)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)RK_CLI_PATH;
    for (int i = 0; args[i]; i++) {
        if (argc == 63) fail_msg("run: too many arguments");
        argv[argc++] = (char *)args[i];
    }
    argv[argc] = NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        int o = open(out_file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(err_file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0) _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) fail_msg("waitpid: %s", strerror(errno));
    R.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    slurp(out_file, R.out, sizeof R.out);
    slurp(err_file, R.err, sizeof R.err);
    return R.code;
}

/* run("rope", "--in", P("x.npy"), ..., NULL) */
#if defined(__GNUC__)
__attribute__((sentinel))
#endif
static int run(const char *first, ...)
{
    const char *args[64];
    int n = 0;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *)) {
        if (n == 63) fail_msg("run: too many arguments");
        args[n++] = a;
    }
    va_end(ap);
    args[n] = NULL;
    return run_v(args);
}

static void expect_ok(void)
{
    if (R.code != 0 || R.err[0]) fail_msg("exit %d, stderr: %s", R.code, R.err);
}

/* Exit 2, stdout empty, exactly one stderr line starting "ropekit <cmd>:" or "ropekit:" and containing every key
 * (NULL-terminated), and no new file in the data directory (files_before from dir_count). */
#if defined(__GNUC__)
__attribute__((sentinel))
#endif
static void expect_fail(int files_before, ...)
{
    if (R.code != 2) fail_msg("exit %d (want 2); stderr: %s", R.code, R.err);
    if (R.out[0]) fail_msg("stdout not empty: %s", R.out);
    size_t n = strlen(R.err);
    const char *nl = strchr(R.err, '\n');
    if (n == 0 || !nl || nl != R.err + n - 1) fail_msg("want one stderr line, got: '%s'", R.err);
    if (strncmp(R.err, "ropekit", 7) || (R.err[7] != ' ' && R.err[7] != ':'))
        fail_msg("message lacks the 'ropekit' prefix: %s", R.err);
    va_list ap;
    va_start(ap, files_before);
    for (const char *k = va_arg(ap, const char *); k; k = va_arg(ap, const char *))
        if (!strstr(R.err, k)) fail_msg("stderr lacks '%s': %s", k, R.err);
    va_end(ap);
    int now = dir_count();
    if (now != files_before) fail_msg("%d files in the data directory, %d before", now,
                                      files_before);
}

/* ---- arrays ------------------------------------------------------------------------------ */
static size_t elt(rk_dtype t) { return t == RK_F32 ? sizeof(float) : sizeof(double); }

static rk_array randarr(rk_dtype dt, int ndim, const size_t *shape, unsigned long seed)
{
    rk_array a = { 0 };
    assert_rk_ok(rk_array_alloc(&a, dt, ndim, shape));
    gsl_rng *r = rk_test_rng(seed);
    for (size_t i = 0; i < a.count; i++) {
        double x = gsl_ran_gaussian(r, 1.0);
        if (dt == RK_F32) ((float *)a.data)[i] = (float)x;
        else ((double *)a.data)[i] = x;
    }
    gsl_rng_free(r);
    return a;
}
#define SHAPE(...) (const size_t[]){ __VA_ARGS__ }
#define NDIM(...) ((int)(sizeof((size_t[]){ __VA_ARGS__ }) / sizeof(size_t)))
#define RAND(dt, seed, ...) randarr((dt), NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__), (seed))

static void save(const char *name, const rk_array *a) { assert_rk_ok(rk_npy_save(P(name), a)); }

static rk_array load(const char *name)
{
    rk_array a = { 0 };
    assert_rk_ok(rk_npy_load(P(name), &a));
    return a;
}

static rk_array convert(const rk_array *src, rk_dtype to)
{
    rk_array a = { 0 };
    assert_rk_ok(rk_array_alloc(&a, to, src->ndim, src->shape));
    for (size_t i = 0; i < a.count; i++) {
        double x = src->dtype == RK_F32 ? ((float *)src->data)[i] : ((double *)src->data)[i];
        if (to == RK_F32) ((float *)a.data)[i] = (float)x;
        else ((double *)a.data)[i] = x;
    }
    return a;
}

static double at(const rk_array *a, size_t i)
{
    return a->dtype == RK_F32 ? ((float *)a->data)[i] : ((double *)a->data)[i];
}

/* Same dtype, shape and bits. */
static void assert_same(const rk_array *got, const rk_array *want)
{
    assert_int_equal(got->dtype, want->dtype);
    assert_int_equal(got->ndim, want->ndim);
    for (int i = 0; i < got->ndim; i++) assert_int_equal(got->shape[i], want->shape[i]);
    if (memcmp(got->data, want->data, got->count * elt(got->dtype)) == 0) return;
    size_t i = 0;
    while (memcmp((char *)got->data + i * elt(got->dtype), (char *)want->data + i * elt(got->dtype),
                  elt(got->dtype)) == 0) i++;
    fail_msg("element %zu differs: got %.17g want %.17g", i, at(got, i), at(want, i));
}

static void assert_close(const rk_array *got, const rk_array *want, double rtol, double atol)
{
    assert_int_equal(got->dtype, want->dtype);
    assert_int_equal(got->count, want->count);
    double *g = malloc(got->count * sizeof *g), *w = malloc(got->count * sizeof *w);
    assert_non_null(g);
    assert_non_null(w);
    for (size_t i = 0; i < got->count; i++) { g[i] = at(got, i); w[i] = at(want, i); }
    assert_allclose(g, w, got->count, rtol, atol);
    free(g);
    free(w);
}

/* ---- references: the library called directly, slice by slice, as the CLI promises --------- */
static rk_array ref_rope(const rk_array *x, const rk_rope_config *cfg, int64_t offset, int inverse)
{
    rk_array y = convert(x, x->dtype);
    size_t d = x->shape[x->ndim - 1], n = x->shape[x->ndim - 2];
    rk_rope_config rc = *cfg;
    rc.dim = d;
    rk_rope *rope;
    assert_rk_ok(rk_rope_create(&rope, &rc));
    for (size_t s = 0; s < x->count / (n * d); s++) {
        if (x->dtype == RK_F32) {
            rk_mat m = rk_mat_view((float *)y.data + s * n * d, n, d, d);
            assert_rk_ok(rk_rope_apply(rope, &m, &m, offset, NULL, inverse));
        } else {
            rk_matd m = rk_matd_view((double *)y.data + s * n * d, n, d, d);
            assert_rk_ok(rk_rope_apply_d(rope, &m, &m, offset, NULL, inverse));
        }
    }
    rk_rope_destroy(rope);
    return y;
}

/* kv_len: NULL (all keys), or n_kv_len values (1: all batch entries; else one per b).
 * head_bias: NULL (ac as given), or one bias row of rk_bias_len(n_q, n_kv) values per head of the
 * (h) axis (H = 1 for (n, d)): slice s runs a plan with row s % H. */
static rk_array ref_attend_hb(rk_attn_config ac, rk_dtype work, const rk_array *q,
                              const rk_array *k, const rk_array *v, const size_t *kv_len,
                              size_t n_kv_len, const double *head_bias)
{
    int nd = q->ndim;
    rk_array wq = convert(q, work), wk = convert(k, work), wv = convert(v, work);
    ac.n_q = q->shape[nd - 2];
    ac.d = q->shape[nd - 1];
    ac.n_kv = k->shape[nd - 2];
    ac.d_v = v->shape[nd - 1];
    size_t shape[4];
    memcpy(shape, q->shape, (size_t)nd * sizeof *shape);
    shape[nd - 1] = ac.d_v;
    rk_array o = { 0 };
    assert_rk_ok(rk_array_alloc(&o, work, nd, shape));
    rk_attn *p = NULL;
    size_t slices = q->count / (ac.n_q * ac.d), heads = nd == 4 ? q->shape[1] : slices;
    size_t H = nd == 2 ? 1 : q->shape[nd - 3], bl = rk_bias_len(ac.n_q, ac.n_kv);
    size_t nq = ac.n_q, nkv = ac.n_kv, d = ac.d, dv = ac.d_v;
    if (!head_bias) assert_rk_ok(rk_attn_create(&p, &ac));
    for (size_t s = 0; s < slices; s++) {
        if (head_bias) {   /* a fresh plan per slice, with its head's row */
            rk_attn_destroy(p);
            ac.bias = head_bias + (s % H) * bl;
            ac.bias_len = bl;
            assert_rk_ok(rk_attn_create(&p, &ac));
        }
        size_t L = !kv_len ? RK_ALL_KEYS : kv_len[n_kv_len == 1 ? 0 : s / heads];
        if (work == RK_F32) {
            rk_mat qs = rk_mat_view((float *)wq.data + s * nq * d, nq, d, d);
            rk_mat ks = rk_mat_view((float *)wk.data + s * nkv * d, nkv, d, d);
            rk_mat vs = rk_mat_view((float *)wv.data + s * nkv * dv, nkv, dv, dv);
            rk_mat os = rk_mat_view((float *)o.data + s * nq * dv, nq, dv, dv);
            assert_rk_ok(rk_attn_execute(p, &qs, &ks, &vs, &os, L));
        } else {
            rk_matd qs = rk_matd_view((double *)wq.data + s * nq * d, nq, d, d);
            rk_matd ks = rk_matd_view((double *)wk.data + s * nkv * d, nkv, d, d);
            rk_matd vs = rk_matd_view((double *)wv.data + s * nkv * dv, nkv, dv, dv);
            rk_matd os = rk_matd_view((double *)o.data + s * nq * dv, nq, dv, dv);
            assert_rk_ok(rk_attn_execute_d(p, &qs, &ks, &vs, &os, L));
        }
    }
    rk_attn_destroy(p);
    rk_array out = convert(&o, q->dtype);
    rk_array_free(&o);
    rk_array_free(&wq);
    rk_array_free(&wk);
    rk_array_free(&wv);
    return out;
}

/* ---- rope ---------------------------------------------------------------------------------- */

/* (n, d), (h, n, d), (b, h, n, d) x float32, float64 x interleaved, half: bits of the library. */
static void test_rope_matches_library(void **state)
{
    (void)state;
    static const char *const styles[] = { "interleaved", "half" };
    for (int nd = 2; nd <= 4; nd++)
        for (int t = 0; t < 2; t++)
            for (int st = 0; st < 2; st++) {
                rk_dtype dt = t ? RK_F64 : RK_F32;
                size_t shape[4] = { 2, 3, 5, 8 };
                unsigned long seed = 100u + (unsigned long)(nd * 4 + t * 2 + st);
                rk_array x = randarr(dt, nd, shape + (4 - nd), seed);
                save("x.npy", &x);
                int64_t off = nd == 3 ? 1000003 : nd * 7 + st;   /* one beyond the table */
                char offs[32];
                snprintf(offs, sizeof offs, "%lld", (long long)off);
                run("rope", "--in", P("x.npy"), "--out", P("y.npy"), "--style", styles[st],
                    "--offset", offs, NULL);
                expect_ok();
                rk_rope_config rc = { .style = st ? RK_ROPE_HALF : RK_ROPE_INTERLEAVED };
                rk_array want = ref_rope(&x, &rc, off, 0), got = load("y.npy");
                assert_same(&got, &want);
                rk_array_free(&x);
                rk_array_free(&want);
                rk_array_free(&got);
            }
}

static void test_rope_scalings(void **state)
{
    (void)state;
    struct { const char *spec; rk_rope_scaling kind; double f, L; rk_dtype dt; int nd; } cases[] = {
        { "linear:2", RK_SCALE_LINEAR, 2, 0, RK_F32, 2 },
        { "ntk:4", RK_SCALE_NTK, 4, 0, RK_F64, 3 },
        { "yarn:8:16", RK_SCALE_YARN, 8, 16, RK_F32, 4 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t shape[4] = { 2, 2, 9, 10 };
        rk_array x = randarr(cases[i].dt, cases[i].nd, shape + (4 - cases[i].nd), 200 + i);
        save("x.npy", &x);
        run("rope", "--in", P("x.npy"), "--out", P("y.npy"), "--scaling", cases[i].spec,
            "--base", "500", "--rotary-dim", "6", "--offset=40", NULL);
        expect_ok();
        rk_rope_config rc = { .base = 500, .rotary_dim = 6, .scaling = cases[i].kind,
                              .factor = cases[i].f, .orig_ctx = cases[i].L };
        rk_array want = ref_rope(&x, &rc, 40, 0), got = load("y.npy");
        assert_same(&got, &want);
        /* The pass-through channels 6..9 are untouched. */
        for (size_t j = 0; j < x.count; j++)
            if (j % 10 >= 6) assert_true(at(&got, j) == at(&x, j));
        rk_array_free(&x);
        rk_array_free(&want);
        rk_array_free(&got);
    }
}

/* rope then rope --inverse gives the input back (yarn: the attention factor divides out). */
static void test_rope_round_trip(void **state)
{
    (void)state;
    for (int t = 0; t < 2; t++) {
        rk_dtype dt = t ? RK_F64 : RK_F32;
        rk_array x = RAND(dt, 300 + t, 3, 11, 8);
        save("x.npy", &x);
        const char *scal = t ? "yarn:4:8" : "none";
        run("rope", "--in", P("x.npy"), "--out", P("y.npy"), "--style", "half", "--offset", "-5",
            "--scaling", scal, NULL);
        expect_ok();
        run("rope", "--in", P("y.npy"), "--out", P("z.npy"), "--style", "half", "--offset", "-5",
            "--scaling", scal, "--inverse", NULL);
        expect_ok();
        rk_array y = load("y.npy"), z = load("z.npy");
        assert_int_equal(z.dtype, dt);
        assert_close(&z, &x, t ? 1e-13 : 2e-6, t ? 1e-13 : 2e-6);
        /* and the forward pass did change something */
        int changed = 0;
        for (size_t i = 0; i < x.count; i++) changed |= at(&y, i) != at(&x, i);
        assert_true(changed);
        rk_array_free(&x);
        rk_array_free(&y);
        rk_array_free(&z);
    }
}

/* ---- attend -------------------------------------------------------------------------------- */

/* Add the sinusoidal encoding to every (n, d) slice of x (rows at pos0 + r), as --sinusoidal. */
static void add_sinusoidal(rk_array *x, int64_t pos0)
{
    size_t n = x->shape[x->ndim - 2], d = x->shape[x->ndim - 1];
    for (size_t s = 0; s < x->count / (n * d); s++) {
        if (x->dtype == RK_F32) {
            rk_mat m = rk_mat_view((float *)x->data + s * n * d, n, d, d);
            assert_rk_ok(rk_sinusoidal_add(&m, pos0, 0.0));
        } else {
            rk_matd m = rk_matd_view((double *)x->data + s * n * d, n, d, d);
            assert_rk_ok(rk_sinusoidal_add_d(&m, pos0, 0.0));
        }
    }
}

/* The CLI on seeded Q, K, V against the library: head_bias as in ref_attend_hb; sinusoidal: the
 * reference runs on copies of q and k (in the working precision) with the encoding added at
 * keys P + j, queries P + n_kv - n_q + i (P = ac.pos_offset). */
static void attend_case_x(const char *what, rk_attn_config ac, rk_dtype in_dt, rk_dtype work,
                          int nd, const size_t *qs, const size_t *ks, const size_t *vs,
                          const size_t *kv_len, size_t n_kv_len, const char *const *extra,
                          const double *head_bias, int sinusoidal);
static void attend_case(const char *what, rk_attn_config ac, rk_dtype in_dt, rk_dtype work,
                        int nd, const size_t *qs, const size_t *ks, const size_t *vs,
                        const size_t *kv_len, size_t n_kv_len, const char *const *extra)
{
    attend_case_x(what, ac, in_dt, work, nd, qs, ks, vs, kv_len, n_kv_len, extra, NULL, 0);
}

static void attend_case_x(const char *what, rk_attn_config ac, rk_dtype in_dt, rk_dtype work,
                          int nd, const size_t *qs, const size_t *ks, const size_t *vs,
                          const size_t *kv_len, size_t n_kv_len, const char *const *extra,
                          const double *head_bias, int sinusoidal)
{
    unsigned long seed = 1000u + (unsigned long)strlen(what) * 7u;
    rk_array q = randarr(in_dt, nd, qs, seed), k = randarr(in_dt, nd, ks, seed + 1),
             v = randarr(in_dt, nd, vs, seed + 2);
    save("q.npy", &q);
    save("k.npy", &k);
    save("v.npy", &v);
    const char *variant = ac.kind == RK_PERFORMER ? "performer"
                        : ac.kind == RK_LINEAR ? "linear"
                        : ac.kind == RK_RPE_FFT ? "rpe-fft" : "softmax";
    int n = 11;
    if (extra && extra[0] && strcmp(extra[0], "--variant") == 0) {   /* a named variant */
        variant = extra[1];
        extra += 2;
    }
    const char *argv[48] = { "attend", "--variant", variant, "--q", P("q.npy"), "--k",
                             P("k.npy"), "--v", P("v.npy"), "--out", P("o.npy") };
    for (int i = 0; extra && extra[i] && n < 47; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    run_v(argv);
    if (R.code != 0 || R.err[0]) fail_msg("%s: exit %d, stderr: %s", what, R.code, R.err);
    rk_array want, got = load("o.npy");
    if (sinusoidal) {
        rk_array sq = convert(&q, work), sk = convert(&k, work);
        size_t n_q = q.shape[nd - 2], n_kv = k.shape[nd - 2];
        add_sinusoidal(&sq, ac.pos_offset + (int64_t)n_kv - (int64_t)n_q);
        add_sinusoidal(&sk, ac.pos_offset);
        rk_array w = ref_attend_hb(ac, work, &sq, &sk, &v, kv_len, n_kv_len, head_bias);
        want = convert(&w, in_dt);
        rk_array_free(&w);
        rk_array_free(&sq);
        rk_array_free(&sk);
    } else {
        want = ref_attend_hb(ac, work, &q, &k, &v, kv_len, n_kv_len, head_bias);
    }
    print_message("attend %s: %zu values\n", what, got.count);
    assert_same(&got, &want);
    rk_array_free(&q);
    rk_array_free(&k);
    rk_array_free(&v);
    rk_array_free(&want);
    rk_array_free(&got);
}
#define ARGS(...) (const char *const[]){ __VA_ARGS__, NULL }

static void test_attend_matches_library(void **state)
{
    (void)state;
    const rk_attn_config sm = { .kind = RK_SOFTMAX };
    rk_attn_config c;

    attend_case("2d bidirectional f32", sm, RK_F32, RK_F32, 2, SHAPE(6, 8), SHAPE(6, 8),
                SHAPE(6, 8), NULL, 0, NULL);
    c = sm; c.causal = 1;
    attend_case("2d causal n_q<n_kv d_v!=d f64", c, RK_F64, RK_F64, 2, SHAPE(4, 8), SHAPE(7, 8),
                SHAPE(7, 5), NULL, 0, ARGS("--causal"));
    c = sm; c.causal = 1; c.rope = RK_ROPE_QK;
    c.rope_cfg = (rk_rope_config){ .style = RK_ROPE_HALF, .base = 500 };
    c.pos_offset = 3;
    attend_case("3d rope qk causal f64", c, RK_F64, RK_F64, 3, SHAPE(3, 5, 8), SHAPE(3, 5, 8),
                SHAPE(3, 5, 8), NULL, 0,
                ARGS("--causal", "--rope", "qk", "--style", "half", "--base=500", "--offset", "3"));
    c = sm; c.rope = RK_ROPE_QK; c.scale = 0.3; c.nthreads = 2;
    c.rope_cfg = (rk_rope_config){ .rotary_dim = 4, .scaling = RK_SCALE_YARN, .factor = 4,
                                   .orig_ctx = 16 };
    attend_case("4d rope yarn n_q>n_kv f32", c, RK_F32, RK_F32, 4, SHAPE(2, 3, 6, 8),
                SHAPE(2, 3, 4, 8), SHAPE(2, 3, 4, 6), NULL, 0,
                ARGS("--rope", "qk", "--rotary-dim", "4", "--scaling", "yarn:4:16", "--scale",
                     "0.3", "--threads", "2"));
    c = sm; c.causal = 1;
    attend_case("4d precision double on f32", c, RK_F32, RK_F64, 4, SHAPE(2, 2, 5, 8),
                SHAPE(2, 2, 5, 8), SHAPE(2, 2, 5, 3), NULL, 0,
                ARGS("--causal", "--precision", "double"));
    attend_case("3d precision float on f64", sm, RK_F64, RK_F32, 3, SHAPE(2, 5, 4),
                SHAPE(2, 7, 4), SHAPE(2, 7, 4), NULL, 0, ARGS("--precision", "float"));
    attend_case("4d kv-len single", sm, RK_F32, RK_F32, 4, SHAPE(2, 2, 5, 8), SHAPE(2, 2, 6, 8),
                SHAPE(2, 2, 6, 8), SHAPE(3), 1, ARGS("--kv-len", "3"));
    c = sm; c.causal = 1;
    attend_case("4d kv-len per batch causal", c, RK_F32, RK_F32, 4, SHAPE(3, 2, 5, 8),
                SHAPE(3, 2, 6, 8), SHAPE(3, 2, 6, 8), SHAPE(6, 0, 2), 3,
                ARGS("--causal", "--kv-len", "6,0,2"));
}

/* FAVOR+ and linear attention: every option lands in the plan config as documented, with the
 * default seed 1 and the library's default m, on every slice. */
static void test_attend_variants_match_library(void **state)
{
    (void)state;
    const rk_attn_config pf = { .kind = RK_PERFORMER, .seed = 1 };
    const rk_attn_config lin = { .kind = RK_LINEAR };
    rk_attn_config c;

    attend_case("performer defaults 2d f32", pf, RK_F32, RK_F32, 2, SHAPE(6, 8), SHAPE(6, 8),
                SHAPE(6, 8), NULL, 0, NULL);
    c = pf; c.causal = 1; c.kernel = RK_KERNEL_HYPERBOLIC; c.proj = RK_PROJ_IID;
    c.proj_norm = RK_NORM_FIXED; c.seed = 7; c.n_features = 16;
    attend_case("performer hyperbolic iid fixed-norm causal 3d f64", c, RK_F64, RK_F64, 3,
                SHAPE(2, 5, 8), SHAPE(2, 7, 8), SHAPE(2, 7, 3), NULL, 0,
                ARGS("--causal", "--kernel", "hyperbolic", "--iid", "--fixed-norm", "--seed",
                     "7", "--features", "16"));
    c = pf; c.kernel = RK_KERNEL_TRIG; c.n_features = 5; c.rope = RK_ROPE_FEATURES;
    c.rope_freq_dim_head = 1; c.rope_cfg = (rk_rope_config){ .base = 300 };
    attend_case("performer trig rope features freq-dim head kv-len 4d f32", c, RK_F32, RK_F32,
                4, SHAPE(2, 2, 5, 8), SHAPE(2, 2, 6, 8), SHAPE(2, 2, 6, 4), SHAPE(4, 6), 2,
                ARGS("--kernel", "trig", "--features", "5", "--rope", "features", "--freq-dim",
                     "head", "--base", "300", "--kv-len", "4,6"));
    c = pf; c.rope = RK_ROPE_QK; c.causal = 1;
    c.rope_cfg = (rk_rope_config){ .style = RK_ROPE_HALF }; c.pos_offset = 5;
    c.n_features = 12; c.scale = 0.2;
    attend_case("performer rope qk half offset orthogonal 3d f32", c, RK_F32, RK_F32, 3,
                SHAPE(3, 6, 8), SHAPE(3, 6, 8), SHAPE(3, 6, 8), NULL, 0,
                ARGS("--rope", "qk", "--style", "half", "--offset", "5", "--causal",
                     "--orthogonal", "--features", "12", "--scale", "0.2"));
    c = pf; c.rope = RK_ROPE_FEATURES; c.n_features = 10;
    attend_case("named performer-rope-features precision double", c, RK_F32, RK_F64, 2,
                SHAPE(7, 6), SHAPE(7, 6), SHAPE(7, 6), NULL, 0,
                ARGS("--variant", "performer-rope-features", "--features", "10", "--rope",
                     "features", "--precision", "double"));
    c = pf; c.rope = RK_ROPE_QK; c.n_features = 8; c.seed = 3;
    attend_case("named performer-rope-qk", c, RK_F64, RK_F64, 2, SHAPE(5, 4), SHAPE(5, 4),
                SHAPE(5, 4), NULL, 0,
                ARGS("--variant", "performer-rope-qk", "--features", "8", "--seed", "3"));
    c = lin; c.causal = 1;
    attend_case("linear elu causal 3d f64", c, RK_F64, RK_F64, 3, SHAPE(2, 6, 8),
                SHAPE(2, 6, 8), SHAPE(2, 6, 5), NULL, 0, ARGS("--causal"));
    c = lin; c.map = RK_MAP_RELU; c.rope = RK_ROPE_FEATURES; c.rope_cfg.rotary_dim = 4;
    attend_case("linear relu rope features rotary-dim 4d f32", c, RK_F32, RK_F32, 4,
                SHAPE(1, 2, 5, 6), SHAPE(1, 2, 5, 6), SHAPE(1, 2, 5, 6), NULL, 0,
                ARGS("--map", "relu", "--rope", "features", "--rotary-dim", "4"));
    c = lin; c.rope = RK_ROPE_QK; c.causal = 1;
    attend_case("named linear-elu-rope-qk", c, RK_F32, RK_F32, 2, SHAPE(6, 8), SHAPE(6, 8),
                SHAPE(6, 8), NULL, 0,
                ARGS("--variant", "linear-elu-rope-qk", "--causal", "--map", "elu"));
    c = lin; c.map = RK_MAP_RELU;
    attend_case("named linear-relu", c, RK_F64, RK_F64, 2, SHAPE(4, 8), SHAPE(4, 8),
                SHAPE(4, 8), NULL, 0, ARGS("--variant", "linear-relu"));
    c = (rk_attn_config){ .kind = RK_SOFTMAX, .rope = RK_ROPE_QK };
    attend_case("named softmax-rope", c, RK_F32, RK_F32, 2, SHAPE(4, 8), SHAPE(4, 8),
                SHAPE(4, 8), NULL, 0, ARGS("--variant", "softmax-rope"));
}

/* ---- issue 6: relative biases, rpe-fft, xPos, sinusoidal ----------------------------------- */

static void write_bytes(const char *name, const void *p, size_t n);

/* The T5 stand-in bias of an (nq, nkv) plan, bidirectional unless causal (malloc'd). */
static double *bias_t5(size_t nq, size_t nkv, int causal)
{
    double *b = malloc(rk_bias_len(nq, nkv) * sizeof *b);
    assert_non_null(b);
    assert_rk_ok(rk_bias_t5(b, nq, nkv, NULL, !causal, 0, 0));
    return b;
}

/* H rows of ALiBi biases: row h with slope h of rk_alibi_slopes(H), or `slope` if >= 0. */
static double *bias_alibi(size_t H, size_t nq, size_t nkv, double slope)
{
    size_t L = rk_bias_len(nq, nkv);
    double *b = malloc(H * L * sizeof *b), sl[16];
    assert_non_null(b);
    assert_true(H <= 16);
    assert_rk_ok(rk_alibi_slopes(sl, H));
    for (size_t h = 0; h < H; h++)
        assert_rk_ok(rk_bias_alibi(b + h * L, nq, nkv, slope >= 0 ? slope : sl[h]));
    if (H > 1 && slope < 0) assert_true(sl[0] != sl[1]);   /* the heads differ */
    return b;
}

/* A random (L,) (rows 0) or (rows, L) bias saved as `name` in dtype dt; its values as the CLI
 * reads them (double), malloc'd. Entry `ninf` (if < count) is -inf. */
static double *save_bias(const char *name, rk_dtype dt, size_t rows, size_t L, unsigned long seed,
                         size_t ninf)
{
    rk_array a = rows ? RAND(dt, seed, rows, L) : RAND(dt, seed, L);
    if (ninf < a.count) {
        if (dt == RK_F32) ((float *)a.data)[ninf] = -INFINITY;
        else ((double *)a.data)[ninf] = -INFINITY;
    }
    save(name, &a);
    double *b = malloc(a.count * sizeof *b);
    assert_non_null(b);
    for (size_t i = 0; i < a.count; i++) b[i] = at(&a, i);
    rk_array_free(&a);
    return b;
}

/* rpe-fft: FAVOR+ and linear bases, causal and not, every bias source, --l2norm; the same
 * config through the library gives the same bits (per-head biases: one plan per head). */
static void test_attend_rpe_fft_matches_library(void **state)
{
    (void)state;
    const rk_attn_config rp = { .kind = RK_RPE_FFT, .rpe_base = RK_PERFORMER, .seed = 1 };
    const rk_attn_config rl = { .kind = RK_RPE_FFT, .rpe_base = RK_LINEAR };
    rk_attn_config c;
    double *b;

    /* the defaults: FAVOR+ (m = 256), the T5 stand-in, bidirectional */
    b = bias_t5(6, 6, 0);
    c = rp; c.bias = b; c.bias_len = 11;
    attend_case("rpe-fft defaults 2d f32", c, RK_F32, RK_F32, 2, SHAPE(6, 8), SHAPE(6, 8),
                SHAPE(6, 8), NULL, 0, NULL);
    free(b);
    /* --bias file (float32), causal, n_q < n_kv, the FAVOR+ options */
    b = save_bias("b.npy", RK_F32, 0, 11, 501, SIZE_MAX);
    c = rp; c.causal = 1; c.bias = b; c.bias_len = 11; c.n_features = 12;
    c.kernel = RK_KERNEL_HYPERBOLIC; c.proj = RK_PROJ_IID; c.proj_norm = RK_NORM_FIXED;
    c.seed = 7; c.scale = 0.5;
    attend_case("rpe-fft bias file causal hyperbolic iid 3d f64", c, RK_F64, RK_F64, 3,
                SHAPE(2, 5, 8), SHAPE(2, 7, 8), SHAPE(2, 7, 3), NULL, 0,
                ARGS("--causal", "--bias", P("b.npy"), "--features", "12", "--kernel",
                     "hyperbolic", "--iid", "--fixed-norm", "--seed", "7", "--scale", "0.5"));
    free(b);
    /* linear base by --map relu, ALiBi with a slope per head of (h = 3, n, d), causal */
    b = bias_alibi(3, 6, 6, -1.0);
    c = rl; c.map = RK_MAP_RELU; c.causal = 1;
    attend_case_x("rpe-fft relu alibi per head causal 3d f32", c, RK_F32, RK_F32, 3,
                  SHAPE(3, 6, 8), SHAPE(3, 6, 8), SHAPE(3, 6, 8), NULL, 0,
                  ARGS("--map", "relu", "--bias-kind", "alibi", "--causal"), b, 0);
    free(b);
    /* linear base by --map elu, T5 causal (future keys share bucket 0, then masked) */
    b = bias_t5(6, 6, 1);
    c = rl; c.causal = 1; c.bias = b; c.bias_len = 11;
    attend_case("rpe-fft elu t5 causal 2d f64", c, RK_F64, RK_F64, 2, SHAPE(6, 8), SHAPE(6, 8),
                SHAPE(6, 5), NULL, 0, ARGS("--map", "elu", "--bias-kind", "t5", "--causal"));
    free(b);
    /* rpe-fft-linear, --l2norm, its T5 default, 4d with per-batch kv-len, double on float32 */
    b = bias_t5(5, 6, 0);
    c = rl; c.rpe_l2norm = 1; c.bias = b; c.bias_len = 10;
    attend_case("rpe-fft-linear l2norm t5 4d kv-len precision double", c, RK_F32, RK_F64, 4,
                SHAPE(2, 2, 5, 8), SHAPE(2, 2, 6, 8), SHAPE(2, 2, 6, 4), SHAPE(4, 6), 2,
                ARGS("--variant", "rpe-fft-linear", "--l2norm", "--kv-len", "4,6", "--precision",
                     "double"));
    free(b);
    /* NPRF: FAVOR+ with --l2norm --scale 1, no bias, causal */
    c = rp; c.rpe_l2norm = 1; c.scale = 1.0; c.causal = 1; c.n_features = 16;
    attend_case("rpe-fft nprf no bias causal 2d f64", c, RK_F64, RK_F64, 2, SHAPE(7, 8),
                SHAPE(7, 8), SHAPE(7, 8), NULL, 0,
                ARGS("--l2norm", "--scale", "1", "--bias-kind", "none", "--causal", "--features",
                     "16"));
    /* an (H, L) bias file: one row per head; float64 with a -inf entry (a mask) */
    b = save_bias("bh.npy", RK_F64, 2, 9, 502, 12);
    c = rp; c.n_features = 8;
    attend_case_x("rpe-fft per-head bias file 3d f32", c, RK_F32, RK_F32, 3, SHAPE(2, 5, 8),
                  SHAPE(2, 5, 8), SHAPE(2, 5, 8), NULL, 0,
                  ARGS("--bias", P("bh.npy"), "--features", "8"), b, 0);
    free(b);
    /* one ALiBi slope for every head of a 4d input, trig features, causal */
    b = bias_alibi(1, 4, 4, 0.25);
    c = rp; c.bias = b; c.bias_len = 7; c.causal = 1; c.n_features = 8;
    c.kernel = RK_KERNEL_TRIG;
    attend_case("rpe-fft alibi-slope 4d", c, RK_F32, RK_F32, 4, SHAPE(2, 2, 4, 8),
                SHAPE(2, 2, 4, 8), SHAPE(2, 2, 4, 8), NULL, 0,
                ARGS("--bias-kind", "alibi", "--alibi-slope", "0.25", "--causal", "--features",
                     "8", "--kernel", "trig"));
    free(b);
    /* ALiBi on (n, d): slope of head 0 of 1 (1/256) */
    b = bias_alibi(1, 5, 5, -1.0);
    c = rp; c.bias = b; c.bias_len = 9; c.n_features = 8;
    attend_case("rpe-fft alibi 2d one head", c, RK_F64, RK_F64, 2, SHAPE(5, 8), SHAPE(5, 8),
                SHAPE(5, 8), NULL, 0, ARGS("--bias-kind", "alibi", "--features", "8"));
    free(b);
}

/* Exact softmax with a relative bias, xPos, and --sinusoidal on every kind of variant. */
static void test_attend_bias_xpos_sinusoidal(void **state)
{
    (void)state;
    const rk_attn_config sm = { .kind = RK_SOFTMAX };
    rk_attn_config c;
    double *b;

    /* --bias file (float64, one -inf entry: a mask), n_q > n_kv */
    b = save_bias("b.npy", RK_F64, 0, 9, 511, 2);
    c = sm; c.bias = b; c.bias_len = 9;
    attend_case("softmax bias file -inf 2d f32", c, RK_F32, RK_F32, 2, SHAPE(6, 8), SHAPE(4, 8),
                SHAPE(4, 8), NULL, 0, ARGS("--bias", P("b.npy")));
    free(b);
    /* --bias-kind t5 causal; and the named softmax-t5 (bidirectional) */
    b = bias_t5(5, 7, 1);
    c = sm; c.causal = 1; c.bias = b; c.bias_len = 11;
    attend_case("softmax t5 causal 3d f64", c, RK_F64, RK_F64, 3, SHAPE(2, 5, 8), SHAPE(2, 7, 8),
                SHAPE(2, 7, 8), NULL, 0, ARGS("--bias-kind", "t5", "--causal"));
    free(b);
    b = bias_t5(6, 6, 0);
    c = sm; c.bias = b; c.bias_len = 11;
    attend_case("named softmax-t5", c, RK_F32, RK_F32, 2, SHAPE(6, 8), SHAPE(6, 8), SHAPE(6, 8),
                NULL, 0, ARGS("--variant", "softmax-t5"));
    free(b);
    /* ALiBi per head of (b = 2, h = 4, n, d), causal with RoPE */
    b = bias_alibi(4, 5, 5, -1.0);
    c = sm; c.causal = 1; c.rope = RK_ROPE_QK;
    attend_case_x("softmax alibi per head rope 4d f32", c, RK_F32, RK_F32, 4, SHAPE(2, 4, 5, 8),
                  SHAPE(2, 4, 5, 8), SHAPE(2, 4, 5, 8), NULL, 0,
                  ARGS("--bias-kind", "alibi", "--causal", "--rope", "qk"), b, 0);
    free(b);
    /* xPos: softmax --rope qk --causal --xpos 512 --offset 3 */
    c = sm; c.causal = 1; c.rope = RK_ROPE_QK; c.xpos_scale_base = 512; c.pos_offset = 3;
    attend_case("softmax xpos 3d f32", c, RK_F32, RK_F32, 3, SHAPE(2, 6, 8), SHAPE(2, 6, 8),
                SHAPE(2, 6, 8), NULL, 0,
                ARGS("--rope", "qk", "--causal", "--xpos", "512", "--offset", "3"));
    /* xPos with gamma, half pairs, a T5 bias, via softmax-rope, f64, n_q < n_kv */
    b = bias_t5(4, 7, 1);
    c = sm; c.causal = 1; c.rope = RK_ROPE_QK; c.xpos_scale_base = 64; c.xpos_gamma = 0.5;
    c.rope_cfg = (rk_rope_config){ .style = RK_ROPE_HALF }; c.bias = b; c.bias_len = 10;
    attend_case("softmax-rope xpos gamma t5 2d f64", c, RK_F64, RK_F64, 2, SHAPE(4, 8),
                SHAPE(7, 8), SHAPE(7, 8), NULL, 0,
                ARGS("--variant", "softmax-rope", "--causal", "--xpos", "64", "--xpos-gamma",
                     "0.5", "--style", "half", "--bias-kind", "t5"));
    free(b);
    /* --sinusoidal: softmax with an offset (n_q < n_kv: queries at P + 2 + i) */
    c = sm; c.pos_offset = 3;
    attend_case_x("softmax sinusoidal offset 3d f32", c, RK_F32, RK_F32, 3, SHAPE(2, 4, 8),
                  SHAPE(2, 6, 8), SHAPE(2, 6, 8), NULL, 0,
                  ARGS("--sinusoidal", "--offset", "3"), NULL, 1);
    /* with RoPE on a performer (both encodings), f64 */
    c = (rk_attn_config){ .kind = RK_PERFORMER, .seed = 1, .n_features = 8, .rope = RK_ROPE_QK,
                          .pos_offset = 2 };
    attend_case_x("performer sinusoidal rope qk 2d f64", c, RK_F64, RK_F64, 2, SHAPE(5, 8),
                  SHAPE(5, 8), SHAPE(5, 8), NULL, 0,
                  ARGS("--sinusoidal", "--rope", "qk", "--offset", "2", "--features", "8"),
                  NULL, 1);
    /* with rpe-fft and its T5 default, a negative offset, n_q > n_kv; and linear */
    b = bias_t5(6, 4, 0);
    c = (rk_attn_config){ .kind = RK_RPE_FFT, .rpe_base = RK_PERFORMER, .seed = 1,
                          .n_features = 8, .pos_offset = -4, .bias = b, .bias_len = 9 };
    attend_case_x("rpe-fft sinusoidal negative offset 2d f64", c, RK_F64, RK_F64, 2,
                  SHAPE(6, 8), SHAPE(4, 8), SHAPE(4, 8), NULL, 0,
                  ARGS("--sinusoidal", "--offset=-4", "--features", "8"), NULL, 1);
    free(b);
    c = (rk_attn_config){ .kind = RK_LINEAR, .causal = 1 };
    attend_case_x("linear sinusoidal causal 4d f32", c, RK_F32, RK_F32, 4, SHAPE(1, 2, 5, 8),
                  SHAPE(1, 2, 5, 8), SHAPE(1, 2, 5, 8), NULL, 0, ARGS("--sinusoidal", "--causal"),
                  NULL, 1);
}

/* rpe-fft's FAVOR+ projection: --save-proj writes the one a performer with the same options
 * draws, --proj reproduces the output; --fft-wisdom writes FFTW wisdom and reuses it. */
static void test_attend_rpe_fft_proj_wisdom(void **state)
{
    (void)state;
    rk_array q = RAND(RK_F64, 521, 2, 7, 8), k = RAND(RK_F64, 522, 2, 9, 8),
             v = RAND(RK_F64, 523, 2, 9, 5);
    save("q.npy", &q);
    save("k.npy", &k);
    save("v.npy", &v);
#define RPE(...) run("attend", "--variant", "rpe-fft", "--q", P("q.npy"), "--k", P("k.npy"), \
                     "--v", P("v.npy"), __VA_ARGS__, NULL)
    RPE("--out", P("o1.npy"), "--features", "12", "--seed", "5", "--iid", "--kernel",
        "hyperbolic", "--causal", "--save-proj", P("w1.npy"));
    expect_ok();
    run("attend", "--variant", "performer", "--q", P("q.npy"), "--k", P("k.npy"), "--v",
        P("v.npy"), "--out", P("o2.npy"), "--features", "12", "--seed", "5", "--iid", "--kernel",
        "hyperbolic", "--save-proj", P("w2.npy"), NULL);
    expect_ok();
    rk_array w1 = load("w1.npy"), w2 = load("w2.npy");
    assert_int_equal(w1.shape[0], 12);
    assert_same(&w1, &w2);
    RPE("--out", P("o3.npy"), "--proj", P("w1.npy"), "--kernel", "hyperbolic", "--causal");
    expect_ok();
    rk_array o1 = load("o1.npy"), o3 = load("o3.npy");
    assert_same(&o3, &o1);

    /* wisdom: created by the first run, read (and saved again) by the second; FFTW_MEASURE may
     * pick other algorithms than FFTW_ESTIMATE, so the outputs agree to rounding only */
    RPE("--out", P("o4.npy"), "--features", "12", "--seed", "5", "--iid", "--kernel",
        "hyperbolic", "--causal", "--fft-wisdom", P("fftw.wis"));
    expect_ok();
    struct stat st;
    assert_int_equal(stat(P("fftw.wis"), &st), 0);
    assert_true(st.st_size > 0);
    RPE("--out", P("o5.npy"), "--features", "12", "--seed", "5", "--iid", "--kernel",
        "hyperbolic", "--causal", "--fft-wisdom", P("fftw.wis"));
    expect_ok();
    rk_array o4 = load("o4.npy"), o5 = load("o5.npy");
    assert_close(&o4, &o1, 1e-10, 1e-12);
    assert_close(&o5, &o1, 1e-10, 1e-12);
    /* a file that is not wisdom is refused, and nothing is written */
    write_bytes("bad.wis", "not wisdom\n", 11);
    int n = dir_count();
    RPE("--out", P("o6.npy"), "--fft-wisdom", P("bad.wis"));
    expect_fail(n, "cannot create the attention plan", "bad.wis", "not FFTW wisdom", NULL);
#undef RPE
    rk_array_free(&q);
    rk_array_free(&k);
    rk_array_free(&v);
    rk_array_free(&w1);
    rk_array_free(&w2);
    rk_array_free(&o1);
    rk_array_free(&o3);
    rk_array_free(&o4);
    rk_array_free(&o5);
}

/* --save-proj writes the projection the plan drew (the library's bits); --proj with that file
 * reproduces the output bit for bit, in both precisions; a run that fails leaves no file. */
static void test_attend_proj_round_trip(void **state)
{
    (void)state;
    rk_array q = RAND(RK_F32, 91, 2, 7, 8), k = RAND(RK_F32, 92, 2, 9, 8),
             v = RAND(RK_F32, 93, 2, 9, 5);
    save("q.npy", &q);
    save("k.npy", &k);
    save("v.npy", &v);
    static const char *const kernels[] = { "positive", "hyperbolic", "trig" };
    for (int kk = 0; kk < 3; kk++) {
        run("attend", "--variant", "performer", "--q", P("q.npy"), "--k", P("k.npy"), "--v",
            P("v.npy"), "--out", P("o1.npy"), "--kernel", kernels[kk], "--features", "12",
            "--seed", "5", "--iid", "--rope", "features", "--causal", "--save-proj", P("w.npy"),
            NULL);
        expect_ok();
        run("attend", "--variant", "performer", "--q", P("q.npy"), "--k", P("k.npy"), "--v",
            P("v.npy"), "--out", P("o2.npy"), "--kernel", kernels[kk], "--proj", P("w.npy"),
            "--rope", "features", "--causal", "--save-proj", P("w2.npy"), NULL);
        expect_ok();
        rk_array o1 = load("o1.npy"), o2 = load("o2.npy"), w = load("w.npy"), w2 = load("w2.npy");
        assert_same(&o2, &o1);
        assert_same(&w2, &w);
        /* the file holds the plan's projection */
        rk_attn_config ac = { .kind = RK_PERFORMER, .n_q = 7, .n_kv = 9, .d = 8, .d_v = 5,
                              .kernel = (rk_kernel)kk, .n_features = 12, .seed = 5,
                              .proj = RK_PROJ_IID };
        rk_attn *p;
        assert_rk_ok(rk_attn_create(&p, &ac));
        size_t m = 0, d = 0;
        const float *pw = rk_attn_proj(p, &m, &d);
        assert_non_null(pw);
        assert_int_equal(w.dtype, RK_F32);
        assert_int_equal(w.ndim, 2);
        assert_int_equal(w.shape[0], 12);
        assert_int_equal(w.shape[1], 8);
        assert_int_equal(m, 12);
        assert_memory_equal(w.data, pw, 12 * 8 * sizeof(float));
        rk_attn_destroy(p);
        /* double precision through the same projection */
        run("attend", "--variant", "performer", "--q", P("q.npy"), "--k", P("k.npy"), "--v",
            P("v.npy"), "--out", P("o3.npy"), "--kernel", kernels[kk], "--features", "12",
            "--seed", "5", "--iid", "--precision", "double", NULL);
        expect_ok();
        run("attend", "--variant", "performer", "--q", P("q.npy"), "--k", P("k.npy"), "--v",
            P("v.npy"), "--out", P("o4.npy"), "--kernel", kernels[kk], "--proj", P("w.npy"),
            "--precision", "double", "--features", "12", NULL);
        expect_ok();
        rk_array o3 = load("o3.npy"), o4 = load("o4.npy");
        assert_same(&o4, &o3);
        rk_array_free(&o1);
        rk_array_free(&o2);
        rk_array_free(&o3);
        rk_array_free(&o4);
        rk_array_free(&w);
        rk_array_free(&w2);
    }
    /* a float64 projection file is read too (converted to float32: the same bits here) */
    rk_array w = load("w.npy"), wd = convert(&w, RK_F64);
    save("wd.npy", &wd);
    run("attend", "--variant", "performer", "--q", P("q.npy"), "--k", P("k.npy"), "--v",
        P("v.npy"), "--out", P("o5.npy"), "--kernel", "trig", "--proj", P("wd.npy"),
        "--rope", "features", "--causal", NULL);
    expect_ok();
    rk_array o1 = load("o1.npy"), o5 = load("o5.npy");
    assert_same(&o5, &o1);

    /* failures leave neither the projection nor the output behind */
    remove_files(data_dir);
    save("q.npy", &q);
    save("k.npy", &k);
    save("v.npy", &v);
    int n = dir_count();
    run("attend", "--variant", "performer", "--q", P("q.npy"), "--k", P("k.npy"), "--v",
        P("v.npy"), "--out", P("nodir/o.npy"), "--save-proj", P("w.npy"), NULL);
    expect_fail(n, "--out", "nodir/o.npy", NULL);
    run("attend", "--variant", "performer", "--q", P("q.npy"), "--k", P("q.npy"), "--v",
        P("v.npy"), "--out", P("o.npy"), "--save-proj", P("w.npy"), NULL);
    expect_fail(n, "--v:", NULL);
    rk_array_free(&w);
    rk_array_free(&wd);
    rk_array_free(&o1);
    rk_array_free(&o5);
    rk_array_free(&q);
    rk_array_free(&k);
    rk_array_free(&v);
}

/* --precision double on float32 input: float32 output, closer to the float64 result than the
 * float32 computation is allowed to be. */
static void test_attend_precision_dtype(void **state)
{
    (void)state;
    rk_array q = RAND(RK_F32, 41, 9, 16), k = RAND(RK_F32, 42, 9, 16), v = RAND(RK_F32, 43, 9, 16);
    save("q.npy", &q);
    save("k.npy", &k);
    save("v.npy", &v);
    run("attend", "--variant", "softmax", "--q", P("q.npy"), "--k", P("k.npy"), "--v", P("v.npy"),
        "--out", P("o.npy"), "--precision", "double", NULL);
    expect_ok();
    rk_array o = load("o.npy");
    assert_int_equal(o.dtype, RK_F32);
    assert_int_equal(o.ndim, 2);
    assert_int_equal(o.shape[0], 9);
    assert_int_equal(o.shape[1], 16);
    rk_array_free(&q);
    rk_array_free(&k);
    rk_array_free(&v);
    rk_array_free(&o);
}

/* ---- errors -------------------------------------------------------------------------------- */

static void write_bytes(const char *name, const void *p, size_t n)
{
    FILE *f = fopen(P(name), "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* A valid .npy of dtype '<i4', shape (2, 2). */
static void write_int32_npy(const char *name)
{
    const char *dict = "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }";
    unsigned char buf[128 + 16];
    size_t hl = 118;   /* 10 + 118 = 128 */
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)(hl & 0xff);
    buf[9] = (unsigned char)(hl >> 8);
    memset(buf + 10, ' ', hl);
    memcpy(buf + 10, dict, strlen(dict));
    buf[10 + hl - 1] = '\n';
    memset(buf + 128, 0, 16);
    write_bytes(name, buf, sizeof buf);
}

/* The attend inputs of the error tests: q, k, v (4, 8) float32. */
static void attend_inputs(void)
{
    rk_array q = RAND(RK_F32, 51, 4, 8), k = RAND(RK_F32, 52, 4, 8), v = RAND(RK_F32, 53, 4, 8);
    save("q.npy", &q);
    save("k.npy", &k);
    save("v.npy", &v);
    rk_array_free(&q);
    rk_array_free(&k);
    rk_array_free(&v);
}

#define ATTEND(...) run("attend", "--variant", "softmax", "--q", P("q.npy"), "--k", P("k.npy"), \
                        "--v", P("v.npy"), "--out", P("o.npy"), __VA_ARGS__, NULL)
#define ROPE(...) run("rope", "--in", P("x.npy"), "--out", P("y.npy"), __VA_ARGS__, NULL)

static void test_errors_files(void **state)
{
    (void)state;
    rk_array x = RAND(RK_F32, 61, 4, 8);
    save("x.npy", &x);
    int n = dir_count();

    run("rope", "--in", P("missing.npy"), "--out", P("y.npy"), NULL);
    expect_fail(n, "ropekit rope: --in", "missing.npy", "No such file or directory", NULL);

    write_bytes("bad.npy", "this is not numpy", 17);
    n = dir_count();
    run("rope", "--in", P("bad.npy"), "--out", P("y.npy"), NULL);
    expect_fail(n, "--in", "bad.npy", "not a .npy file", NULL);

    write_int32_npy("int.npy");
    n = dir_count();
    run("rope", "--in", P("int.npy"), "--out", P("y.npy"), NULL);
    expect_fail(n, "--in", "int.npy", "<i4", NULL);

    /* A directory that does not exist for the output: nothing written anywhere. */
    run("rope", "--in", P("x.npy"), "--out", P("nodir/y.npy"), NULL);
    expect_fail(n, "--out", "nodir/y.npy", NULL);
    rk_array_free(&x);
}

static void test_errors_rope(void **state)
{
    (void)state;
    rk_array x = RAND(RK_F32, 62, 4, 8), odd = RAND(RK_F32, 63, 4, 7), v = RAND(RK_F32, 64, 8);
    save("x.npy", &x);
    save("odd.npy", &odd);
    save("vec.npy", &v);
    int n = dir_count();

    run("rope", "--in", P("odd.npy"), "--out", P("y.npy"), NULL);
    expect_fail(n, "ropekit rope:", "odd d = 7", NULL);
    ROPE("--rotary-dim", "7");
    expect_fail(n, "ropekit rope: --rotary-dim 7 must be even", NULL);
    ROPE("--rotary-dim", "10");
    expect_fail(n, "--rotary-dim 10 exceeds d = 8", NULL);
    run("rope", "--in", P("vec.npy"), "--out", P("y.npy"), NULL);
    expect_fail(n, "vec.npy has shape (8,)", "expected (n, d)", NULL);
    ROPE("--base", "abc");
    expect_fail(n, "--base: 'abc' is not a number", NULL);
    ROPE("--base", "10000x");
    expect_fail(n, "--base: '10000x' is not a number", NULL);
    ROPE("--base", "inf");
    expect_fail(n, "--base", "not a finite number", NULL);
    ROPE("--base", "-2");
    expect_fail(n, "--base -2 must be > 0", NULL);
    ROPE("--offset", "1.5");
    expect_fail(n, "--offset: '1.5' is not an integer", NULL);
    ROPE("--offset", "99999999999999999999");
    expect_fail(n, "--offset", "out of range", NULL);
    ROPE("--scaling", "cubic:2");
    expect_fail(n, "--scaling 'cubic:2'", "unknown scaling", NULL);
    ROPE("--scaling", "yarn:8");
    expect_fail(n, "--scaling 'yarn:8'", "factor F and original context L", NULL);
    ROPE("--scaling", "linear:0");
    expect_fail(n, "factor 0 must be > 0", NULL);
    ROPE("--style", "neox");
    expect_fail(n, "unknown style 'neox' (expected: interleaved, half)", NULL);
    ROPE("--inverse=yes");
    expect_fail(n, "--inverse is a flag", NULL);
    ROPE("--offset", "1", "--offset", "2");
    expect_fail(n, "--offset given more than once", NULL);
    ROPE("--bogus", "1");
    expect_fail(n, "unknown option '--bogus'", NULL);
    ROPE("stray");
    expect_fail(n, "unexpected argument 'stray'", NULL);
    ROPE("--base");
    expect_fail(n, "--base needs a value", NULL);
    run("rope", "--in", P("x.npy"), NULL);
    expect_fail(n, "missing required option --out", NULL);
    run("rope", "--out", P("y.npy"), NULL);
    expect_fail(n, "missing required option --in", NULL);

    float *xd = x.data;
    xd[13] = NAN;
    save("nan.npy", &x);
    n = dir_count();
    run("rope", "--in", P("nan.npy"), "--out", P("y.npy"), NULL);
    expect_fail(n, "--in", "nan.npy", "(1, 5) is NaN", NULL);
    run("rope", "--in", P("nan.npy"), "--out", P("y.npy"), "--allow-nonfinite", NULL);
    expect_ok();
    rk_array_free(&x);
    rk_array_free(&odd);
    rk_array_free(&v);
}

static void test_errors_attend(void **state)
{
    (void)state;
    attend_inputs();
    rk_array k7 = RAND(RK_F32, 71, 5, 7), kd = RAND(RK_F64, 72, 4, 8), v5 = RAND(RK_F32, 73, 5, 8),
             q3 = RAND(RK_F32, 74, 2, 4, 8), odd = RAND(RK_F32, 75, 4, 7),
             b4 = RAND(RK_F32, 76, 2, 1, 4, 8);
    save("k7.npy", &k7);
    save("kd.npy", &kd);
    save("v5.npy", &v5);
    save("q3.npy", &q3);
    save("odd.npy", &odd);
    save("b4.npy", &b4);
    int n = dir_count();

    run("attend", "--variant", "softmax", "--q", P("q.npy"), "--k", P("k7.npy"), "--v",
        P("v.npy"), "--out", P("o.npy"), NULL);
    expect_fail(n, "ropekit attend: --k:", "k7.npy has shape (5, 7) but q has d = 8", NULL);
    run("attend", "--variant", "softmax", "--q", P("q.npy"), "--k", P("k.npy"), "--v",
        P("v5.npy"), "--out", P("o.npy"), NULL);
    expect_fail(n, "--v:", "v5.npy has shape (5, 8) but k has n_kv = 4", NULL);
    run("attend", "--variant", "softmax", "--q", P("q3.npy"), "--k", P("k.npy"), "--v",
        P("v.npy"), "--out", P("o.npy"), NULL);
    expect_fail(n, "--k:", "leading axes", NULL);
    run("attend", "--variant", "softmax", "--q", P("q.npy"), "--k", P("kd.npy"), "--v",
        P("v.npy"), "--out", P("o.npy"), NULL);
    expect_fail(n, "--k:", "kd.npy is float64", "float32", "share a dtype", NULL);
    run("attend", "--variant", "softmax", "--q", P("odd.npy"), "--k", P("odd.npy"), "--v",
        P("v.npy"), "--out", P("o.npy"), "--rope", "qk", NULL);
    expect_fail(n, "odd d = 7", NULL);
    run("attend", "--variant", "favor", "--q", P("q.npy"), "--k", P("k.npy"), "--v",
        P("v.npy"), "--out", P("o.npy"), NULL);
    expect_fail(n, "ropekit attend: unknown variant 'favor' (expected: softmax, performer, linear, "
                "rpe-fft, or one of: softmax, softmax-rope, performer, ", "linear-elu-rope-features",
                "rpe-fft-linear", NULL);
    run("attend", "--q", P("q.npy"), "--k", P("k.npy"), "--v", P("v.npy"), "--out", P("o.npy"),
        NULL);
    expect_fail(n, "missing required option --variant", NULL);
    run("attend", "--variant", "softmax", "--q", P("q.npy"), "--k", P("k.npy"), "--v", P("v.npy"),
        NULL);
    expect_fail(n, "missing required option --out", NULL);
    ATTEND("--threads", "-1");
    expect_fail(n, "--threads -1 must be >= 1", NULL);
    ATTEND("--threads", "abc");
    expect_fail(n, "--threads: 'abc' is not an integer", NULL);
    ATTEND("--scale", "0");
    expect_fail(n, "--scale must be nonzero", NULL);
    ATTEND("--scale", "nan");
    expect_fail(n, "--scale", "not a finite number", NULL);
    ATTEND("--kv-len", "5");
    expect_fail(n, "--kv-len 5 exceeds n_kv = 4", NULL);
    ATTEND("--kv-len", "2,x");
    expect_fail(n, "--kv-len: 'x' is not an integer", NULL);
    ATTEND("--kv-len", "-1");
    expect_fail(n, "--kv-len -1 must be >= 0", NULL);
    ATTEND("--kv-len", "1,2");
    expect_fail(n, "--kv-len has 2 values but the batch has 1 entry", NULL);
    run("attend", "--variant", "softmax", "--q", P("b4.npy"), "--k", P("b4.npy"), "--v",
        P("b4.npy"), "--out", P("o.npy"), "--kv-len", "1,2,3", NULL);
    expect_fail(n, "--kv-len has 3 values but the batch has 2 entries", NULL);
    ATTEND("--base", "100");
    expect_fail(n, "--base has no effect without --rope", NULL);
    ATTEND("--rope", "rotary");
    expect_fail(n, "unknown --rope mode 'rotary' (expected: none, qk, features)", NULL);
    ATTEND("--precision", "half");
    expect_fail(n, "unknown precision 'half' (expected: float, double)", NULL);
    ATTEND("--causal=1");
    expect_fail(n, "--causal is a flag", NULL);
    ATTEND("--out", P("o2.npy"));
    expect_fail(n, "--out given more than once", NULL);

    /* NaN in V: named with the file and index. */
    rk_array v = load("v.npy");
    ((float *)v.data)[9] = -INFINITY;
    save("v.npy", &v);
    n = dir_count();
    ATTEND("--causal");
    expect_fail(n, "--v:", "v.npy", "(1, 1) is -Inf", NULL);
    /* float64 beyond float32's range under --precision float */
    ((double *)kd.data)[0] = 1e300;
    save("kd.npy", &kd);
    rk_array qd = RAND(RK_F64, 77, 4, 8);
    save("qd.npy", &qd);
    n = dir_count();
    run("attend", "--variant", "softmax", "--q", P("qd.npy"), "--k", P("kd.npy"), "--v",
        P("qd.npy"), "--out", P("o.npy"), "--precision", "float", NULL);
    expect_fail(n, "--k:", "(0, 0) is +Inf", NULL);

    rk_array_free(&v);
    rk_array_free(&qd);
    rk_array_free(&k7);
    rk_array_free(&kd);
    rk_array_free(&v5);
    rk_array_free(&q3);
    rk_array_free(&odd);
    rk_array_free(&b4);
}

/* Options that do not apply to the chosen variant, and bad FAVOR+ settings. */
static void test_errors_attend_variants(void **state)
{
    (void)state;
    attend_inputs();
    rk_array w6 = RAND(RK_F32, 94, 5, 6), w16 = RAND(RK_F32, 95, 16, 8),
             w7 = RAND(RK_F32, 96, 7, 8), odd = RAND(RK_F32, 97, 4, 7);
    save("w6.npy", &w6);
    save("w16.npy", &w16);
    save("w7.npy", &w7);
    save("odd.npy", &odd);
    int n = dir_count();
#define VARIANT(name, ...) run("attend", "--variant", name, "--q", P("q.npy"), "--k", P("k.npy"), \
                               "--v", P("v.npy"), "--out", P("o.npy"), __VA_ARGS__, NULL)
    VARIANT("performer", "--features", "7", "--rope", "features");
    expect_fail(n, "--rope features rotates the features in pairs", "--features 7",
                "odd feature width", NULL);
    VARIANT("performer", "--features", "0");
    expect_fail(n, "--features 0 must be >= 1", NULL);
    VARIANT("performer", "--features", "x");
    expect_fail(n, "--features: 'x' is not an integer", NULL);
    VARIANT("performer", "--proj", P("w6.npy"));
    expect_fail(n, "--proj:", "w6.npy", "d = 8", NULL);
    VARIANT("performer", "--proj", P("missing.npy"));
    expect_fail(n, "--proj:", "missing.npy", NULL);
    VARIANT("performer", "--proj", P("w16.npy"), "--features", "8");
    expect_fail(n, "--features 8 but --proj", "w16.npy has m = 16 rows", NULL);
    VARIANT("performer", "--proj", P("w7.npy"), "--rope", "features");
    expect_fail(n, "--proj", "w7.npy has an odd m = 7", NULL);
    VARIANT("performer", "--proj", P("w16.npy"), "--seed", "3");
    expect_fail(n, "--seed has no effect with --proj", NULL);
    VARIANT("performer", "--proj", P("w16.npy"), "--iid");
    expect_fail(n, "--iid has no effect with --proj", NULL);
    VARIANT("performer", "--map", "relu");
    expect_fail(n, "--map applies to --variant linear only", "FAVOR+ takes --kernel", NULL);
    VARIANT("performer", "--kernel", "gauss");
    expect_fail(n, "unknown kernel 'gauss' (expected: positive, hyperbolic, trig)", NULL);
    VARIANT("performer", "--iid", "--orthogonal");
    expect_fail(n, "--iid and --orthogonal exclude each other", NULL);
    VARIANT("performer", "--seed", "0");
    expect_fail(n, "--seed 0 must be >= 1", NULL);
    VARIANT("performer", "--scale", "-0.5");
    expect_fail(n, "--scale -0.5 must be > 0 for performer", NULL);
    VARIANT("performer", "--freq-dim", "head");
    expect_fail(n, "--freq-dim has no effect without --rope", NULL);
    VARIANT("performer", "--rope", "qk", "--freq-dim", "head");
    expect_fail(n, "--freq-dim applies to --rope features only", NULL);
    VARIANT("performer", "--rope", "features", "--features", "8", "--rotary-dim", "10");
    expect_fail(n, "--rotary-dim 10 exceeds the feature width 8", NULL);
    VARIANT("performer", "--save-proj", P("o.npy"));
    expect_fail(n, "--save-proj and --out name the same file", NULL);
    VARIANT("linear", "--kernel", "trig");
    expect_fail(n, "--kernel applies to --variant performer only",
                "linear attention has no random projection", NULL);
    VARIANT("linear", "--features", "8");
    expect_fail(n, "--features applies to --variant performer only", "width is d", NULL);
    VARIANT("linear", "--save-proj", P("w.npy"));
    expect_fail(n, "--save-proj applies to --variant performer only", NULL);
    VARIANT("linear", "--map", "tanh");
    expect_fail(n, "unknown --map 'tanh' (expected: elu, relu)", NULL);
    run("attend", "--variant", "linear", "--q", P("odd.npy"), "--k", P("odd.npy"), "--v",
        P("v.npy"), "--out", P("o.npy"), "--rope", "features", NULL);
    expect_fail(n, "--rope features rotates the features in pairs", "d = 7", NULL);
    VARIANT("softmax", "--seed", "2");
    expect_fail(n, "--seed applies to --variant performer only", "exact softmax", NULL);
    VARIANT("softmax", "--proj", P("w16.npy"));
    expect_fail(n, "--proj applies to --variant performer only", NULL);
    VARIANT("softmax", "--map", "elu");
    expect_fail(n, "--map applies to --variant linear only", NULL);
    VARIANT("softmax", "--rope", "features");
    expect_fail(n, "--rope features rotates feature vectors", "--rope qk", NULL);
    VARIANT("performer-rope-qk", "--rope", "features");
    expect_fail(n, "--rope features: variant 'performer-rope-qk' fixes the rope mode to qk",
                NULL);
    VARIANT("softmax-rope", "--rope", "none");
    expect_fail(n, "variant 'softmax-rope' fixes the rope mode to qk", NULL);
    VARIANT("linear-relu", "--map", "elu");
    expect_fail(n, "--map elu: variant 'linear-relu' fixes the map to relu", NULL);
#undef VARIANT
    rk_array_free(&w6);
    rk_array_free(&w16);
    rk_array_free(&w7);
    rk_array_free(&odd);
}

/* Issue-6 options: bad biases, options that do not apply, xPos preconditions; all before any
 * file is written. */
static void test_errors_attend_issue6(void **state)
{
    (void)state;
    attend_inputs();   /* q, k, v (4, 8) float32: L = 7 */
    free(save_bias("b6.npy", RK_F64, 0, 6, 531, SIZE_MAX));
    free(save_bias("b27.npy", RK_F32, 2, 7, 532, SIZE_MAX));
    free(save_bias("b117.npy", RK_F64, 1, 7, 533, SIZE_MAX));
    rk_array b3d = RAND(RK_F64, 534, 1, 1, 7), bnan = RAND(RK_F32, 535, 7),
             binf = RAND(RK_F64, 536, 7), bbig = RAND(RK_F64, 537, 7);
    ((float *)bnan.data)[3] = NAN;
    ((double *)binf.data)[0] = INFINITY;
    ((double *)bbig.data)[5] = 1e31;
    save("b3d.npy", &b3d);
    save("bnan.npy", &bnan);
    save("binf.npy", &binf);
    save("bbig.npy", &bbig);
    write_int32_npy("bint.npy");
    int n = dir_count();
#define VARIANT(name, ...) run("attend", "--variant", name, "--q", P("q.npy"), "--k", P("k.npy"), \
                               "--v", P("v.npy"), "--out", P("o.npy"), __VA_ARGS__, NULL)
    /* the bias file */
    ATTEND("--bias", P("b6.npy"));
    expect_fail(n, "--bias:", "b6.npy has 6 values, expected 7 = n_q + n_kv - 1 for n_q = 4, "
                "n_kv = 4 (offsets -3 .. 3", NULL);
    VARIANT("rpe-fft", "--bias", P("b27.npy"));
    expect_fail(n, "--bias:", "b27.npy has shape (2, 7), expected (1, 7): one row per head", NULL);
    ATTEND("--bias", P("b3d.npy"));
    expect_fail(n, "--bias:", "b3d.npy has shape (1, 1, 7), expected (7,)", NULL);
    ATTEND("--bias", P("bnan.npy"));
    expect_fail(n, "--bias:", "bnan.npy: entry (3) (offset 0) is NaN", "finite or -inf", NULL);
    VARIANT("rpe-fft", "--bias", P("binf.npy"));
    expect_fail(n, "--bias:", "binf.npy: entry (0) (offset -3) is +Inf", NULL);
    ATTEND("--bias", P("bbig.npy"));
    expect_fail(n, "cannot create the attention plan", "exceeds 1e30", NULL);
    ATTEND("--bias", P("bint.npy"));
    expect_fail(n, "--bias:", "bint.npy", "<i4", NULL);
    /* a per-head row that fails at the second head's plan: still no output */
    rk_array h3 = RAND(RK_F32, 538, 2, 4, 8), bh = RAND(RK_F64, 539, 2, 7);
    ((double *)bh.data)[7 + 3] = 1e31;
    save("h3.npy", &h3);
    save("bh.npy", &bh);
    n = dir_count();
    run("attend", "--variant", "softmax", "--q", P("h3.npy"), "--k", P("h3.npy"), "--v",
        P("h3.npy"), "--out", P("o.npy"), "--bias", P("bh.npy"), NULL);
    expect_fail(n, "cannot create the attention plan", "exceeds 1e30", NULL);
    rk_array_free(&h3);
    rk_array_free(&bh);
    ATTEND("--bias", P("missing.npy"));
    expect_fail(n, "--bias:", "missing.npy", NULL);
    /* which variants take a bias, and how */
    VARIANT("performer", "--bias", P("b117.npy"));
    expect_fail(n, "--bias applies to --variant softmax and rpe-fft only", "FAVOR+", NULL);
    VARIANT("linear", "--bias-kind", "t5");
    expect_fail(n, "--bias-kind applies to --variant softmax and rpe-fft only", NULL);
    ATTEND("--bias", P("b117.npy"), "--bias-kind", "t5");
    expect_fail(n, "--bias and --bias-kind exclude each other", NULL);
    ATTEND("--bias-kind", "rope");
    expect_fail(n, "unknown --bias-kind 'rope' (expected: none, t5, alibi)", NULL);
    ATTEND("--alibi-slope", "0.5");
    expect_fail(n, "--alibi-slope applies to --bias-kind alibi only", NULL);
    VARIANT("rpe-fft", "--bias-kind", "t5", "--alibi-slope", "0.5");
    expect_fail(n, "--alibi-slope applies to --bias-kind alibi only", NULL);
    ATTEND("--bias-kind", "alibi", "--alibi-slope", "-1");
    expect_fail(n, "--alibi-slope -1 must be >= 0", NULL);
    VARIANT("softmax-t5", "--bias-kind", "alibi");
    expect_fail(n, "--bias-kind: variant 'softmax-t5' fixes the bias to t5", NULL);
    VARIANT("softmax-t5", "--bias", P("b117.npy"));
    expect_fail(n, "--bias: variant 'softmax-t5' fixes the bias to t5", NULL);
    /* xPos */
    ATTEND("--rope", "qk", "--xpos", "512");
    expect_fail(n, "--xpos needs --causal", NULL);
    ATTEND("--causal", "--xpos", "512");
    expect_fail(n, "--xpos needs --rope qk", NULL);
    VARIANT("performer", "--rope", "qk", "--causal", "--xpos", "512");
    expect_fail(n, "--xpos applies to --variant softmax only", NULL);
    VARIANT("rpe-fft", "--xpos", "512");
    expect_fail(n, "--xpos applies to --variant softmax only", NULL);
    ATTEND("--rope", "qk", "--causal", "--xpos", "0");
    expect_fail(n, "--xpos 0 must be > 0", NULL);
    ATTEND("--rope", "qk", "--causal", "--xpos-gamma", "0.5");
    expect_fail(n, "--xpos-gamma has no effect without --xpos", NULL);
    ATTEND("--rope", "qk", "--causal", "--xpos", "0.01");
    expect_fail(n, "cannot create the attention plan", "e^64", NULL);
    /* rpe-fft only, and what rpe-fft refuses */
    ATTEND("--l2norm");
    expect_fail(n, "--l2norm applies to --variant rpe-fft only", NULL);
    VARIANT("performer", "--fft-wisdom", P("w.wis"));
    expect_fail(n, "--fft-wisdom applies to --variant rpe-fft only", NULL);
    VARIANT("rpe-fft", "--fft-wisdom", P("o.npy"));
    expect_fail(n, "--fft-wisdom and --out name the same file", NULL);
    VARIANT("rpe-fft", "--rope", "qk");
    expect_fail(n, "--rope qk: rpe-fft does not combine RoPE with the FFT relative bias", NULL);
    VARIANT("rpe-fft", "--base", "500");
    expect_fail(n, "--base has no effect without --rope", NULL);
    VARIANT("rpe-fft", "--map", "relu", "--features", "8");
    expect_fail(n, "--features applies to --variant performer only, or rpe-fft with its FAVOR+ "
                "features", "rpe-fft with --map", NULL);
    VARIANT("rpe-fft-linear", "--seed", "2");
    expect_fail(n, "--seed applies to --variant performer only", NULL);
    VARIANT("rpe-fft-linear", "--map", "relu");
    expect_fail(n, "--map relu: variant 'rpe-fft-linear' fixes the map to elu (use --variant "
                "rpe-fft --map relu)", NULL);
    VARIANT("rpe-fft", "--map", "tanh");
    expect_fail(n, "unknown --map 'tanh' (expected: elu, relu)", NULL);
    VARIANT("rpe-fft", "--allow-nonfinite");
    expect_fail(n, "--allow-nonfinite does not apply to rpe-fft", NULL);
    VARIANT("rpe-fft", "--scale", "-1");
    expect_fail(n, "--scale -1 must be > 0 for rpe-fft's FAVOR+ features", NULL);
    VARIANT("rpe-fft", "--proj", P("b117.npy"));
    expect_fail(n, "--proj:", "b117.npy", "d = 8", NULL);
    /* positions */
    ATTEND("--offset", "3");
    expect_fail(n, "--offset has no effect without --rope or --sinusoidal", NULL);
    ATTEND("--sinusoidal", "--offset", "9223372036854775807");
    expect_fail(n, "--offset 9223372036854775807: the last position overflows", NULL);
    ATTEND("--sinusoidal", "--offset=-9223372036854775808");
    expect_fail(n, "the first query position P + n_kv - n_q overflows", NULL);
#undef VARIANT
    rk_array_free(&b3d);
    rk_array_free(&bnan);
    rk_array_free(&binf);
    rk_array_free(&bbig);
}

/* scaling with the relative-bias rows: summary lines, crossover against softmax-t5, the m column
 * (random features only), and a point over the cap skipped cleanly. */
static void test_sweeps_rpe(void **state)
{
    (void)state;
    run("scaling", "--variants", "rpe-fft,rpe-fft-linear,softmax-t5", "--n-min", "16", "--n-max",
        "64", "--d", "8", "--m", "8", "--repeats", "2", "--warmup", "0", "--fit-min", "16",
        "--out", P("r.tsv"), NULL);
    if (R.code != 0 || R.err[0]) fail_msg("scaling: exit %d, stderr: %s", R.code, R.err);
    assert_non_null(strstr(R.out, "\nrpe-fft bidirectional: exponent = "));
    assert_non_null(strstr(R.out, "\nrpe-fft causal: exponent = "));
    assert_non_null(strstr(R.out, "\nrpe-fft-linear causal: exponent = "));
    assert_non_null(strstr(R.out, "\nsoftmax-t5 bidirectional: exponent = "));
    assert_non_null(strstr(R.out, "\nrpe-fft causal: ") && strstr(R.out, " softmax-t5"));
    FILE *f = fopen(P("r.tsv"), "rb");
    assert_non_null(f);
    static char tab[65536];
    size_t nt = fread(tab, 1, sizeof tab - 1, f);
    fclose(f);
    tab[nt] = '\0';
    /* variant, mask, n, status, d, m */
    assert_non_null(strstr(tab, "\nrpe-fft\tbidirectional\t16\tok\t8\t8\t"));
    assert_non_null(strstr(tab, "\nrpe-fft-linear\tcausal\t64\tok\t8\t0\t"));
    assert_non_null(strstr(tab, "\nsoftmax-t5\tcausal\t32\tok\t8\t0\t"));

    /* a cap below any time: the first length runs, the next is skipped */
    run("scaling", "--variants", "rpe-fft", "--masks", "causal", "--n-min", "16", "--n-max", "32",
        "--d", "8", "--m", "8", "--repeats", "1", "--warmup", "0", "--max-seconds", "1e-12",
        "--out", P("r2.tsv"), NULL);
    if (R.code != 0 || R.err[0]) fail_msg("scaling: exit %d, stderr: %s", R.code, R.err);
    assert_non_null(strstr(R.out, "skipped rpe-fft causal n=32 (predicted "));
    assert_non_null(strstr(R.out, "rpe-fft causal: exponent = n/a (1 measured length)"));
    f = fopen(P("r2.tsv"), "rb");
    assert_non_null(f);
    nt = fread(tab, 1, sizeof tab - 1, f);
    fclose(f);
    tab[nt] = '\0';
    assert_non_null(strstr(tab, "\nrpe-fft\tcausal\t32\tskipped\t8\t8\t"));
}

/* scaling and approx: usage errors exit 2 before any output; tiny sweeps print their summary
 * and write the table; a table written with other settings is refused on --resume and kept. */
static void expect_help(const char *key);
static void test_sweeps(void **state)
{
    (void)state;
    int n = dir_count();
    run("scaling", "--factor", "1", NULL);
    expect_fail(n, "ropekit scaling: --factor 1 must be > 1", NULL);
    run("scaling", "--variants", "softmax,nope", NULL);
    expect_fail(n, "--variants: unknown variant 'nope' (expected: softmax, ", NULL);
    run("scaling", "--variants", "softmax,softmax", NULL);
    expect_fail(n, "--variants: 'softmax' given twice", NULL);
    run("scaling", "--masks", "both", NULL);
    expect_fail(n, "--masks: unknown mask 'both' (expected: bidirectional, causal)", NULL);
    run("scaling", "--resume", NULL);
    expect_fail(n, "--resume needs --out FILE", NULL);
    run("scaling", "--n-min", "100", "--n-max", "10", NULL);
    expect_fail(n, "--n-max 10 is below --n-min 100", NULL);
    run("scaling", "--max-repeats", "2", "--repeats", "3", NULL);
    expect_fail(n, "--max-repeats 2 is below --repeats 3", NULL);
    run("scaling", "--d", "7", "--variants", "softmax-rope", "--n-min", "8", "--n-max", "8", NULL);
    expect_fail(n, "ropekit scaling: softmax-rope:", "odd", NULL);
    run("approx", "--kernels", "gauss", NULL);
    expect_fail(n, "ropekit approx: --kernels: unknown name 'gauss' (expected: positive, "
                "hyperbolic, trig)", NULL);
    run("approx", "--variants", "linear-elu", NULL);
    expect_fail(n, "'linear-elu' is not a random-feature approximation", NULL);
    run("approx", "--norms", "1,-2", NULL);
    expect_fail(n, "--norms: -2 must be > 0", NULL);
    run("approx", "--norms", "1,,2", NULL);
    expect_fail(n, "--norms: empty item", NULL);
    run("approx", "--variants", "performer-rope-features", "--kernels", "positive", "--m-min",
        "7", "--m-max", "7", NULL);
    expect_fail(n, "m = 7 on the grid is odd", NULL);
    run("approx", "--level", "1", NULL);
    expect_fail(n, "--level 1 must be < 1", NULL);

    run("scaling", "--variants", "softmax,linear-elu", "--n-min", "16", "--n-max", "64",
        "--d", "8", "--repeats", "2", "--warmup", "0", "--fit-min", "16", "--out", P("s.tsv"),
        NULL);
    if (R.code != 0 || R.err[0]) fail_msg("scaling: exit %d, stderr: %s", R.code, R.err);
    assert_non_null(strstr(R.out, "# machine: cpu="));
    assert_non_null(strstr(R.out, "\nsoftmax bidirectional: exponent = "));
    assert_non_null(strstr(R.out, "\nlinear-elu causal: exponent = "));
    assert_non_null(strstr(R.out, "expected 1: "));
    run("approx", "--variants", "performer", "--kernels", "positive", "--projs", "iid",
        "--m-min", "8", "--m-max", "32", "--norms", "1", "--n", "16", "--d", "8", "--seeds",
        "3", "--out", P("a.tsv"), NULL);
    if (R.code != 0 || R.err[0]) fail_msg("approx: exit %d, stderr: %s", R.code, R.err);
    assert_non_null(strstr(R.out, "\nperformer positive iid norm=1: output slope = "));
    n = dir_count();
    assert_int_equal(n, 2);
    /* other settings on --resume: refused, the table untouched */
    FILE *f = fopen(P("a.tsv"), "rb");
    assert_non_null(f);
    char before[8192], after[8192];
    size_t nb = fread(before, 1, sizeof before, f);
    fclose(f);
    run("approx", "--variants", "performer", "--kernels", "positive", "--projs", "iid",
        "--m-min", "8", "--m-max", "32", "--norms", "1", "--n", "16", "--d", "8", "--seeds",
        "4", "--out", P("a.tsv"), "--resume", NULL);
    expect_fail(n, "--out:", "a.tsv' was written with other settings ('seeds=3' there, "
                "'seeds=4' now)", NULL);
    f = fopen(P("a.tsv"), "rb");
    assert_non_null(f);
    size_t na = fread(after, 1, sizeof after, f);
    fclose(f);
    assert_int_equal(na, nb);
    assert_memory_equal(after, before, nb);

    run("scaling", "--help", NULL);
    expect_help("usage: ropekit scaling");
    assert_non_null(strstr(R.out, "--max-seconds S"));
    run("approx", "--help", NULL);
    expect_help("usage: ropekit approx");
    assert_non_null(strstr(R.out, "--target E"));
}

static void test_errors_top(void **state)
{
    (void)state;
    int n = dir_count();
    run("frobnicate", NULL);
    expect_fail(n, "unknown command 'frobnicate'", NULL);
    run("help", "frobnicate", NULL);
    expect_fail(n, "unknown command 'frobnicate'", NULL);
    run_v((const char *const[]){ NULL });
    if (R.code != 2 || !strstr(R.err, "usage: ropekit")) fail_msg("no arguments: exit %d, %s",
                                                                 R.code, R.err);
}

/* A failed run leaves an existing output byte for byte as it was, and no temporary file. */
static void test_existing_output_untouched(void **state)
{
    (void)state;
    attend_inputs();
    rk_array old = RAND(RK_F64, 81, 3, 3), k7 = RAND(RK_F32, 82, 5, 7);
    save("o.npy", &old);
    save("y.npy", &old);
    save("k7.npy", &k7);
    FILE *f = fopen(P("o.npy"), "rb");
    assert_non_null(f);
    unsigned char before[4096], after[4096];
    size_t nb = fread(before, 1, sizeof before, f);
    fclose(f);
    int n = dir_count();

    /* fails after reading inputs (shape), after the NaN check, and in parsing */
    run("attend", "--variant", "softmax", "--q", P("q.npy"), "--k", P("k7.npy"), "--v",
        P("v.npy"), "--out", P("o.npy"), NULL);
    expect_fail(n, "--k:", NULL);
    rk_array x = RAND(RK_F32, 83, 4, 8);
    ((float *)x.data)[0] = NAN;
    save("x.npy", &x);
    n = dir_count();
    run("rope", "--in", P("x.npy"), "--out", P("o.npy"), NULL);
    expect_fail(n, "NaN", NULL);
    ATTEND("--kv-len", "9");
    expect_fail(n, "--kv-len", NULL);

    f = fopen(P("o.npy"), "rb");
    assert_non_null(f);
    size_t na = fread(after, 1, sizeof after, f);
    fclose(f);
    assert_int_equal(na, nb);
    assert_memory_equal(after, before, nb);

    /* and a successful run does replace it */
    ATTEND("--causal");
    expect_ok();
    rk_array o = load("o.npy");
    assert_int_equal(o.dtype, RK_F32);
    assert_int_equal(dir_count(), n);
    rk_array_free(&o);
    rk_array_free(&x);
    rk_array_free(&old);
    rk_array_free(&k7);
}

/* ---- help and version ---------------------------------------------------------------------- */

static void expect_help(const char *key)
{
    if (R.code != 0 || R.err[0]) fail_msg("exit %d, stderr: %s", R.code, R.err);
    if (!strstr(R.out, key)) fail_msg("stdout lacks '%s': %s", key, R.out);
}

static void test_help(void **state)
{
    (void)state;
    run("rope", "--help", NULL);
    expect_help("usage: ropekit rope --in X.npy --out Y.npy");
    assert_non_null(strstr(R.out, "--rotary-dim R"));
    run("attend", "--help", NULL);
    expect_help("usage: ropekit attend --variant NAME");
    assert_non_null(strstr(R.out, "performer-rope-features"));
    assert_non_null(strstr(R.out, "--save-proj W.npy"));
    assert_non_null(strstr(R.out, "--kv-len L[,L...]"));
    assert_non_null(strstr(R.out, "rpe-fft-linear"));
    assert_non_null(strstr(R.out, "--bias-kind none|t5|alibi"));
    assert_non_null(strstr(R.out, "--fft-wisdom FILE"));
    run("attend", "-h", NULL);
    expect_help("usage: ropekit attend");
    run("help", "rope", NULL);
    expect_help("usage: ropekit rope");
    run("help", NULL);
    expect_help("commands:");
    assert_non_null(strstr(R.out, "rope"));
    assert_non_null(strstr(R.out, "attend"));
    run("--help", NULL);
    expect_help("usage: ropekit <command>");
    run("--version", NULL);
    expect_help("ropekit " RK_VERSION "\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_help, clean),
        cmocka_unit_test_setup(test_rope_matches_library, clean),
        cmocka_unit_test_setup(test_rope_scalings, clean),
        cmocka_unit_test_setup(test_rope_round_trip, clean),
        cmocka_unit_test_setup(test_attend_matches_library, clean),
        cmocka_unit_test_setup(test_attend_precision_dtype, clean),
        cmocka_unit_test_setup(test_attend_variants_match_library, clean),
        cmocka_unit_test_setup(test_attend_proj_round_trip, clean),
        cmocka_unit_test_setup(test_attend_rpe_fft_matches_library, clean),
        cmocka_unit_test_setup(test_attend_bias_xpos_sinusoidal, clean),
        cmocka_unit_test_setup(test_attend_rpe_fft_proj_wisdom, clean),
        cmocka_unit_test_setup(test_errors_attend_variants, clean),
        cmocka_unit_test_setup(test_errors_attend_issue6, clean),
        cmocka_unit_test_setup(test_errors_files, clean),
        cmocka_unit_test_setup(test_errors_rope, clean),
        cmocka_unit_test_setup(test_errors_attend, clean),
        cmocka_unit_test_setup(test_errors_top, clean),
        cmocka_unit_test_setup(test_sweeps, clean),
        cmocka_unit_test_setup(test_sweeps_rpe, clean),
        cmocka_unit_test_setup(test_existing_output_untouched, clean),
    };
    return cmocka_run_group_tests_name("cli", tests, setup, teardown);
}
