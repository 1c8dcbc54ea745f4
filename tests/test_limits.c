/* Limits and interruption.
 *
 * Library: sizes whose byte counts overflow size_t, and sizes beyond the int that BLAS / FFTW
 * index with, are refused with RK_EOVERFLOW by every constructor (every attention kind built in,
 * RoPE, matrices, arrays, views) before anything is allocated or handed to a dependency: the
 * refusals are checked with the allocator failing from its first call (rk__alloc_fail_after(0)),
 * or from its second where a kind checks after allocating its plan header. Allocation failure at
 * every allocation of every constructor returns RK_ENOMEM with a message and no object (leaks:
 * make asan / scripts/valgrind.sh).
 *
 * Interruption: the real binary (RK_CLI_PATH) is SIGKILLed at seeded random moments:
 *   - ropekit approx writing a table: after each kill the file holds the config line, the header
 *     and only complete rows, each identical to the row of an uninterrupted run (at most one torn
 *     last line); --resume then completes it to exactly the uninterrupted rows;
 *   - ropekit attend writing an .npy and ropekit decay writing a TSV (atomic outputs): after each
 *     kill the output is absent, or the previous file unchanged, or the complete new file, never
 *     a partial one (a temporary file beside it may remain: nothing can delete it after SIGKILL). */
#include "check.h"
#include "rk_internal.h"
#include "run_cli.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gsl/gsl_errno.h>

#define BIG_INT ((size_t)INT_MAX + 1)   /* the first size an int cannot hold */

/* ---- library: every constructor refuses sizes that overflow ---------------------------------- */

/* A small valid config of `kind`. */
static rk_attn_config small(rk_kind kind)
{
    rk_attn_config c = { .kind = kind, .n_q = 4, .n_kv = 4, .d = 8, .seed = 1 };
    return c;
}

/* The kinds built into this library: the three of issue 3, then any later kind that accepts a
 * small config (RK_RPE_FFT and whatever follows), so a new kind is covered without editing. */
static int kinds(rk_kind *out)
{
    int n = 0;
    for (int k = RK_SOFTMAX; k < RK_SOFTMAX + 16; k++) {
        rk_attn_config c = small((rk_kind)k);
        rk_attn *p = NULL;
        int rc = rk_attn_create(&p, &c);
        rk_attn_destroy(p);
        if (rc == RK_OK) out[n++] = (rk_kind)k;
        else if (k <= RK_LINEAR) fail_msg("kind %d refuses a small config: %s", k, rk_last_error());
    }
    return n;
}

/* create must return `code` with a message and no plan, allocating at most `allowed` times. */
static void expect_create(const rk_attn_config *c, int code, long allowed, const char *what)
{
    rk_attn *p = (rk_attn *)&p;   /* not NULL: create must clear it */
    rk__alloc_fail_after(allowed);
    int rc = rk_attn_create(&p, c);
    rk__alloc_fail_after(-1);
    if (rc != code)
        fail_msg("kind %d, %s: %s (%s), expected %s", (int)c->kind, what, rk_strerror(rc),
                 rk_last_error(), rk_strerror(code));
    assert_null(p);
    assert_true(rk_last_error()[0] != '\0');
}

static void test_attn_sizes_every_kind(void **state)
{
    (void)state;
    rk_kind k[16];
    int nk = kinds(k);
    assert_true(nk >= 3);
    print_message("%d attention kinds built in\n", nk);
    for (int i = 0; i < nk; i++) {
        rk_attn_config c;
        const struct { size_t n_q, n_kv, d, d_v; const char *what; } cases[] = {
            { BIG_INT, 4, 8, 0, "n_q = INT_MAX + 1" },
            { 4, BIG_INT, 8, 0, "n_kv = INT_MAX + 1" },
            { 4, 4, BIG_INT, 0, "d = INT_MAX + 1" },
            { 4, 4, 8, BIG_INT, "d_v = INT_MAX + 1" },
            { SIZE_MAX, 4, 8, 0, "n_q = SIZE_MAX" },
            { 4, 4, SIZE_MAX, 0, "d = SIZE_MAX" },
            { INT_MAX, 4, INT_MAX, 0, "n_q * d bytes overflow" },
            { 4, INT_MAX, 8, INT_MAX, "n_kv * d_v bytes overflow" },
            { (size_t)1 << 30, 4, (size_t)1 << 30, 0, "n_q * d = 2^60 doubles" },
        };
        for (size_t j = 0; j < sizeof cases / sizeof cases[0]; j++) {
            c = small(k[i]);
            c.n_q = cases[j].n_q;
            c.n_kv = cases[j].n_kv;
            c.d = cases[j].d;
            c.d_v = cases[j].d_v;
            /* common sizes are refused before the plan itself is allocated */
            expect_create(&c, RK_EOVERFLOW, 0, cases[j].what);
        }
    }
}

static void test_attn_sizes_performer(void **state)
{
    (void)state;
    static const rk_kernel kernels[] = { RK_KERNEL_POSITIVE, RK_KERNEL_HYPERBOLIC, RK_KERNEL_TRIG };
    for (int i = 0; i < 3; i++) {
        rk_attn_config c = small(RK_PERFORMER);
        c.kernel = kernels[i];
        c.n_features = BIG_INT;
        expect_create(&c, RK_EOVERFLOW, 1, "n_features = INT_MAX + 1");
        c.n_features = SIZE_MAX;
        expect_create(&c, RK_EOVERFLOW, 1, "n_features = SIZE_MAX");
        if (kernels[i] != RK_KERNEL_POSITIVE) {
            c.n_features = (size_t)INT_MAX / 2 + 1;   /* 2m features do not fit an int */
            expect_create(&c, RK_EOVERFLOW, 1, "2 n_features > INT_MAX");
        }
        /* feature width times d_v beyond an int */
        c = small(RK_PERFORMER);
        c.kernel = kernels[i];
        c.n_features = (size_t)1 << 20;
        c.d_v = (size_t)1 << 12;
        expect_create(&c, RK_EOVERFLOW, 1, "F * d_v > INT_MAX");
        c.n_features = (size_t)1 << 30;
        c.d = INT_MAX;
        c.d_v = 1;
        expect_create(&c, RK_EOVERFLOW, 1, "m = 2^30 features with d = INT_MAX");
    }
    /* linear attention: F = d, so F * d_v */
    rk_attn_config c = small(RK_LINEAR);
    c.d = (size_t)1 << 16;
    c.d_v = (size_t)1 << 16;
    expect_create(&c, RK_EOVERFLOW, 1, "linear F * d_v > INT_MAX");
}

/* A kind after RK_LINEAR doing FFTs (RK_RPE_FFT, issue 6): its transform length is at least
 * n_q + n_kv - 1, which must fit FFTW's int even when n_q and n_kv each do. */
static void test_attn_sizes_fft(void **state)
{
    (void)state;
    rk_kind k[16];
    int nk = kinds(k), seen = 0;
    for (int i = 0; i < nk; i++) {
        if (k[i] <= RK_LINEAR) continue;
        rk_attn_config c = small(k[i]);
        c.n_q = c.n_kv = ((size_t)1 << 30) + 1;   /* each fits an int, their sum does not */
        c.d = 1;
        rk_attn *p = NULL;
        rk__alloc_fail_after(1);                   /* the plan header, nothing more */
        int rc = rk_attn_create(&p, &c);
        rk__alloc_fail_after(-1);
        rk_attn_destroy(p);
        print_message("kind %d with n_q = n_kv = 2^30 + 1: %s (%s)\n", (int)k[i], rk_strerror(rc),
                      rk_last_error());
        /* a kind without transforms may accept it (then the second allocation fails) */
        assert_true(rc == RK_EOVERFLOW || rc == RK_ENOMEM);
        if (rc == RK_EOVERFLOW) seen++;
    }
    print_message("%d kind(s) beyond softmax/performer/linear refused the transform length\n",
                  seen);
}

static void test_rope_sizes(void **state)
{
    (void)state;
    rk_rope *r = (rk_rope *)&r;
    const struct { size_t dim, table_len; const char *what; } cases[] = {
        { 64, SIZE_MAX / 4, "table_len = SIZE_MAX / 4" },
        { 64, (size_t)PTRDIFF_MAX / 64 + 1, "table bytes beyond PTRDIFF_MAX" },
        { SIZE_MAX - 1, 0, "dim = SIZE_MAX - 1" },
        { SIZE_MAX - 1, 1, "dim = SIZE_MAX - 1, one position" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rk_rope_config c = { .dim = cases[i].dim, .table_len = cases[i].table_len };
        rk__alloc_fail_after(0);
        int rc = rk_rope_create(&r, &c);
        rk__alloc_fail_after(-1);
        if (rc != RK_EOVERFLOW)
            fail_msg("%s: %s (%s), expected %s", cases[i].what, rk_strerror(rc), rk_last_error(),
                     rk_strerror(RK_EOVERFLOW));
        assert_null(r);
        r = (rk_rope *)&r;
    }
    /* positions beyond int64 */
    rk_rope_config c = { .dim = 4 };
    assert_rk_ok(rk_rope_create(&r, &c));
    float x[8] = { 0 };
    rk_mat m = rk_mat_view(x, 2, 4, 4);
    assert_rk_error(rk_rope_apply(r, &m, &m, INT64_MAX, NULL, 0), RK_EOVERFLOW);
    rk_rope_destroy(r);
}

static void test_buffer_sizes(void **state)
{
    (void)state;
    const struct { size_t rows, cols; } cases[] = {
        { SIZE_MAX, 2 }, { 2, SIZE_MAX }, { (size_t)1 << 32, (size_t)1 << 32 },
        { (size_t)PTRDIFF_MAX / 4 + 1, 1 }, { (size_t)1 << 31, (size_t)1 << 31 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rk_mat m = { (float *)&m, 1, 1, 1 };
        rk_matd md = { (double *)&md, 1, 1, 1 };
        rk__alloc_fail_after(0);
        int r1 = rk_mat_alloc(&m, cases[i].rows, cases[i].cols);
        int r2 = rk_matd_alloc(&md, cases[i].rows, cases[i].cols);
        rk__alloc_fail_after(-1);
        if (r1 != RK_EOVERFLOW || r2 != RK_EOVERFLOW)
            fail_msg("%zu x %zu: %s / %s, expected %s", cases[i].rows, cases[i].cols,
                     rk_strerror(r1), rk_strerror(r2), rk_strerror(RK_EOVERFLOW));
        assert_null(m.data);
        assert_null(md.data);
    }
    /* arrays: element count and byte count */
    const struct { rk_dtype dt; int nd; size_t shape[3]; } arr[] = {
        { RK_F32, 3, { (size_t)1 << 32, (size_t)1 << 32, 2 } },
        { RK_F64, 1, { (size_t)1 << 61 } },
        { RK_F32, 2, { SIZE_MAX, SIZE_MAX } },
        { RK_F32, 1, { (size_t)PTRDIFF_MAX / 4 + 1 } },
    };
    for (size_t i = 0; i < sizeof arr / sizeof arr[0]; i++) {
        rk_array a;
        rk__alloc_fail_after(0);
        int rc = rk_array_alloc(&a, arr[i].dt, arr[i].nd, arr[i].shape);
        rk__alloc_fail_after(-1);
        if (rc != RK_EOVERFLOW) fail_msg("array %zu: %s, expected %s", i, rk_strerror(rc),
                                         rk_strerror(RK_EOVERFLOW));
        assert_null(a.data);
    }
    /* an empty axis makes the count 0 whatever the others are: allowed */
    rk_array a;
    assert_rk_ok(rk_array_alloc(&a, RK_F64, 3, (size_t[]){ SIZE_MAX, 0, SIZE_MAX }));
    assert_int_equal(a.count, 0);
    rk_array_free(&a);
    /* a hand-made array whose count and shape disagree cannot be saved */
    rk_array bad = { RK_F32, 2, { (size_t)1 << 40, (size_t)1 << 40 }, 4, (float[4]){ 0 } };
    assert_rk_error(rk_npy_save("/nonexistent/never.npy", &bad), RK_EOVERFLOW);
}

/* Views whose span overflows are refused at execute, before any kernel reads them. */
static void test_view_sizes(void **state)
{
    (void)state;
    rk_kind k[16];
    int nk = kinds(k);
    float buf[64] = { 0 }, out[64];
    for (int i = 0; i < nk; i++) {
        rk_attn_config c = small(k[i]);
        c.n_q = c.n_kv = 2;
        c.d = 4;
        rk_attn *p;
        assert_rk_ok(rk_attn_create(&p, &c));
        rk_mat q = rk_mat_view(buf, 2, 4, SIZE_MAX / 2), kk = rk_mat_view(buf, 2, 4, 4),
               v = rk_mat_view(buf, 2, 4, 4), o = rk_mat_view(out, 2, 4, 4);
        assert_rk_error(rk_attn_execute(p, &q, &kk, &v, &o, RK_ALL_KEYS), RK_EOVERFLOW);
        q.ld = 4;
        o.ld = (size_t)PTRDIFF_MAX / 2;
        assert_rk_error(rk_attn_execute(p, &q, &kk, &v, &o, RK_ALL_KEYS), RK_EOVERFLOW);
        rk_attn_destroy(p);
    }
}

/* ---- library: allocation failure at every allocation ---------------------------------------- */

/* Fail the k-th allocation for k = 0, 1, ... until creation succeeds: every failure must be
 * RK_ENOMEM with a message and no plan. Returns the number of allocations of a success. */
static long sweep_attn(const rk_attn_config *c, const char *what)
{
    for (long k = 0; k < 10000; k++) {
        rk_attn *p = NULL;
        rk__alloc_fail_after(k);
        int rc = rk_attn_create(&p, c);
        rk__alloc_fail_after(-1);
        if (rc == RK_OK) {
            /* and the plan works: one execute */
            rk_mat q, kk, v, o;
            assert_rk_ok(rk_mat_alloc(&q, c->n_q, c->d));
            assert_rk_ok(rk_mat_alloc(&kk, c->n_kv, c->d));
            assert_rk_ok(rk_mat_alloc(&v, c->n_kv, c->d_v ? c->d_v : c->d));
            assert_rk_ok(rk_mat_alloc(&o, c->n_q, c->d_v ? c->d_v : c->d));
            assert_rk_ok(rk_attn_execute(p, &q, &kk, &v, &o, RK_ALL_KEYS));
            rk_mat_free(&q);
            rk_mat_free(&kk);
            rk_mat_free(&v);
            rk_mat_free(&o);
            rk_attn_destroy(p);
            return k;
        }
        if (rc != RK_ENOMEM)
            fail_msg("%s: allocation %ld failing gave %s (%s)", what, k, rk_strerror(rc),
                     rk_last_error());
        assert_null(p);
        assert_true(rk_last_error()[0] != '\0');
    }
    fail_msg("%s: still failing after 10000 allocations", what);
    return -1;
}

static void test_alloc_failure_everywhere(void **state)
{
    (void)state;
    rk_kind k[16];
    int nk = kinds(k);
    for (int i = 0; i < nk; i++) {
        rk_attn_config c = small(k[i]);
        c.n_q = 5;
        c.n_kv = 7;
        c.causal = 1;
        c.nthreads = 2;
        long n = sweep_attn(&c, "plain");
        print_message("kind %d: %ld allocations, each failing cleanly\n", (int)k[i], n);
        if (k[i] == RK_SOFTMAX || k[i] == RK_PERFORMER || k[i] == RK_LINEAR) {
            c.rope = k[i] == RK_SOFTMAX ? RK_ROPE_QK : RK_ROPE_FEATURES;
            c.rope_cfg.scaling = RK_SCALE_YARN;
            c.rope_cfg.factor = 4;
            sweep_attn(&c, "with rope");
        }
    }
    /* RoPE plans, the recurrent state, and the .npy reader */
    rk_rope_config rc = { .dim = 16, .rotary_dim = 8, .scaling = RK_SCALE_NTK, .factor = 2 };
    for (long j = 0;; j++) {
        rk_rope *r = NULL;
        rk__alloc_fail_after(j);
        int e = rk_rope_create(&r, &rc);
        rk__alloc_fail_after(-1);
        if (e == RK_OK) { rk_rope_destroy(r); break; }
        assert_int_equal(e, RK_ENOMEM);
        assert_null(r);
    }
    rk_attn_config pc = small(RK_PERFORMER);
    pc.causal = 1;
    rk_attn *p;
    assert_rk_ok(rk_attn_create(&p, &pc));
    for (long j = 0;; j++) {
        rk_attn_state *s = NULL;
        rk__alloc_fail_after(j);
        int e = rk_attn_state_create(&s, p);
        rk__alloc_fail_after(-1);
        if (e == RK_OK) { rk_attn_state_destroy(s); break; }
        assert_int_equal(e, RK_ENOMEM);
        assert_null(s);
    }
    rk_attn_destroy(p);
}

/* ---- interruption ---------------------------------------------------------------------------- */
static char dir[512];

static const char *P(const char *name)
{
    static char ring[8][800];
    static unsigned next;
    char *b = ring[next++ % 8];
    snprintf(b, sizeof ring[0], "%s/%s", dir, name);
    return b;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *p = malloc(cap + 1);
    assert_non_null(p);
    size_t got;
    while ((got = fread(p + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            p = realloc(p, (cap *= 2) + 1);
            assert_non_null(p);
        }
    }
    fclose(f);
    p[n] = '\0';
    if (len) *len = n;
    return p;
}

/* Seeded moments: xorshift64*, uniform in [0, 1). */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static double uniform(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ULL) >> 11) * 0x1.0p-53;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_s(double s)
{
    struct timespec ts = { (time_t)s, (long)((s - floor(s)) * 1e9) };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* Run args to completion (must exit 0); returns the seconds it took. */
static double run_ok(const char *const *args)
{
    double t0 = now();
    run_cli_result r;
    if (run_cli(args, dir, 600, &r) != 0) fail_msg("%s: exit %d: %s", args[0], r.code, r.err);
    return now() - t0;
}

/* Start args, SIGKILL it after t seconds; returns 1 if the kill landed (the run had not ended). */
static int run_killed(const char *const *args, double t)
{
    pid_t pid = run_cli_start(args, dir);
    assert_true(pid > 0);
    sleep_s(t);
    kill(pid, SIGKILL);
    int code = run_cli_wait(pid, 600);
    if (code != 0 && code != 128 + SIGKILL) fail_msg("%s: exit %d", args[0], code);
    return code == 128 + SIGKILL;
}

/* Remove temporaries "<name>.XXXXXX" (mkstemp) or "<name>.tmpXXXXXX" left beside `name` by a
 * kill; anything else unexpected fails the test. Returns how many there were. */
static int remove_temporaries(const char *name, const char *const *keep)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    int n = 0;
    size_t nl = strlen(name);
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        int kept = 0;
        for (int i = 0; keep[i]; i++) kept |= !strcmp(e->d_name, keep[i]);
        if (kept) continue;
        size_t l = strlen(e->d_name);
        if (strncmp(e->d_name, name, nl) || e->d_name[nl] != '.' || (l != nl + 7 && l != nl + 10))
            fail_msg("unexpected file '%s' after a kill", e->d_name);
        unlink(P(e->d_name));
        n++;
    }
    closedir(d);
    return n;
}

/* Data lines of a table (after the column header, no comments), in order; *torn: a last line
 * without its newline (dropped). */
static size_t table_rows(char *text, char **row, size_t max, const char *header, int *torn)
{
    size_t n = 0;
    int past_header = 0;
    *torn = 0;
    for (char *s = text; *s;) {
        char *nl = strchr(s, '\n');
        if (!nl) { *torn = 1; break; }
        *nl = '\0';
        if (s[0] != '#') {
            if (!past_header) {
                if (strcmp(s, header)) fail_msg("header line '%s', expected '%s'", s, header);
                past_header = 1;
            } else {
                if (n == max) fail_msg("more than %zu rows", max);
                row[n++] = s;
            }
        }
        s = nl + 1;
    }
    return n;
}

static size_t count_fields(const char *s)
{
    size_t n = 1;
    for (; *s; s++) n += *s == '\t';
    return n;
}

#define KILLS 8
#define APPROX_ARGS(out, ...) (const char *const[]){ "approx", "--variants", "performer",     \
    "--kernels", "positive,hyperbolic,trig", "--projs", "iid,orthogonal", "--m-min", "8",         \
    "--m-max", "128", "--norms", "1,2", "--n", "24", "--d", "8", "--seeds", "3", "--threads", "1", \
    "--out", (out), __VA_ARGS__ NULL }

static void test_kill_table(void **state)
{
    (void)state;
    double t_ref = run_ok(APPROX_ARGS("ref.tsv", ));
    char *ref = slurp(P("ref.tsv"), NULL);
    assert_non_null(ref);
    char *config_end = strchr(ref, '\n');
    assert_non_null(config_end);
    char config[4096];
    snprintf(config, sizeof config, "%.*s", (int)(config_end - ref), ref);
    char *hdr_start = strstr(ref, "\nvariant\t");
    assert_non_null(hdr_start);
    char header[1024];
    snprintf(header, sizeof header, "%.*s", (int)strcspn(hdr_start + 1, "\n"), hdr_start + 1);
    size_t ncols = count_fields(header);
    char *ref_copy = strdup(ref), *ref_row[512];
    int torn;
    size_t nref = table_rows(ref_copy, ref_row, 512, header, &torn);
    assert_false(torn);
    assert_true(nref >= 40);
    print_message("reference: %zu rows in %.2f s\n", nref, t_ref);

    /* KILLS kills that land before the run ends; a moment after the end (the machine was
     * faster than for the reference) shortens the range to that moment and does not count */
    int mid = 0, landed_n = 0;
    for (int i = 0; landed_n < KILLS && i < 4 * KILLS; i++) {
        unlink(P("kill.tsv"));
        double t = uniform() * t_ref;
        int landed = run_killed(APPROX_ARGS("kill.tsv", ), t);
        if (landed) landed_n++;
        else t_ref = t;
        int temps = remove_temporaries("kill.tsv", (const char *const[]){ "ref.tsv", "kill.tsv",
                                                                           NULL });
        char *text = slurp(P("kill.tsv"), NULL);
        size_t nrows = 0;
        if (text) {
            /* table_open writes config and header atomically: both are there */
            if (strncmp(text, config, strlen(config)) || text[strlen(config)] != '\n')
                fail_msg("kill at %.3f s: line 1 is not the config line", t);
            char *row[512];
            nrows = table_rows(text, row, 512, header, &torn);
            for (size_t r = 0; r < nrows; r++) {
                if (count_fields(row[r]) != ncols)
                    fail_msg("kill at %.3f s: row %zu has %zu fields", t, r, count_fields(row[r]));
                if (r >= nref || strcmp(row[r], ref_row[r]))
                    fail_msg("kill at %.3f s: row %zu differs from the uninterrupted run:\n%s\n%s",
                             t, r, row[r], r < nref ? ref_row[r] : "(none)");
            }
            if (nrows < nref) assert_null(strstr(text, "# summary"));
            free(text);
        }
        print_message("kill at %.3f s%s: %zu of %zu rows kept%s, %d temporary file(s)\n", t,
                      landed ? "" : " (after the end)", nrows, nref, torn ? ", torn last line" : "",
                      temps);
        mid += landed && nrows > 0 && nrows < nref;
        /* resume completes it to exactly the uninterrupted rows */
        run_ok(APPROX_ARGS("kill.tsv", "--resume", ));
        text = slurp(P("kill.tsv"), NULL);
        assert_non_null(text);
        char *row[512];
        size_t n = table_rows(text, row, 512, header, &torn);
        assert_false(torn);
        assert_int_equal(n, nref);
        for (size_t r = 0; r < n; r++)
            if (strcmp(row[r], ref_row[r])) fail_msg("resumed row %zu differs", r);
        free(text);
    }
    /* not every moment can fall inside the sweep, but the seeded ones do on any machine where
     * the sweep takes longer than starting a process */
    print_message("%d of %d kills landed between the first and the last row\n", mid, landed_n);
    assert_true(mid >= 1);
    free(ref);
    free(ref_copy);
}

static void save_rand(const char *name, int nd, const size_t *shape, unsigned long seed)
{
    rk_array a;
    assert_rk_ok(rk_array_alloc(&a, RK_F32, nd, shape));
    gsl_rng *r = rk_test_rng(seed);
    for (size_t i = 0; i < a.count; i++) ((float *)a.data)[i] = (float)(gsl_rng_uniform(r) - 0.5);
    gsl_rng_free(r);
    assert_rk_ok(rk_npy_save(P(name), &a));
    rk_array_free(&a);
}

/* After a kill: `name` is absent, or byte for byte `old` (the file before the run), or byte for
 * byte `done` (the uninterrupted run's output). Returns 0 absent, 1 old, 2 new. */
static int atomic_state(const char *name, const char *old, size_t old_len, const char *done,
                        size_t done_len, double t)
{
    size_t n;
    char *now_text = slurp(P(name), &n);
    if (!now_text) return 0;
    int which = old && n == old_len && !memcmp(now_text, old, n) ? 1
              : n == done_len && !memcmp(now_text, done, n) ? 2 : -1;
    free(now_text);
    if (which < 0) fail_msg("kill at %.3f s: %s is neither the old nor the new file (%zu bytes)",
                            t, name, n);
    return which;
}

static void test_kill_atomic_outputs(void **state)
{
    (void)state;
    save_rand("q.npy", 3, (size_t[]){ 4, 384, 64 }, 1);
    save_rand("k.npy", 3, (size_t[]){ 4, 384, 64 }, 2);
    save_rand("v.npy", 3, (size_t[]){ 4, 384, 1024 }, 3);
#define ATTEND(out) (const char *const[]){ "attend", "--variant", "softmax", "--q", "q.npy", "--k", \
    "k.npy", "--v", "v.npy", "--out", (out), "--causal", "--threads", "1", NULL }
#define DECAY(out) (const char *const[]){ "decay", "--dim", "64", "--draws", "1500",             \
    "--max-distance", "400", "--out", (out), NULL }
    const struct { const char *what, *ref, *out; } jobs[] = {
        { "attend", "ref.npy", "o.npy" }, { "decay", "ref.tsv", "d.tsv" },
    };
    for (int j = 0; j < 2; j++) {
        int is_attend = j == 0;
        double t_ref = run_ok(is_attend ? ATTEND(jobs[j].ref) : DECAY(jobs[j].ref));
        size_t done_len, old_len;
        char *done = slurp(P(jobs[j].ref), &done_len);
        assert_non_null(done);
        if (is_attend) {   /* and the output is a valid array */
            rk_array o;
            assert_rk_ok(rk_npy_load(P(jobs[j].ref), &o));
            rk_array_free(&o);
        }
        const char *old = "an older file that a failed or killed run must leave alone\n";
        old_len = strlen(old);
        for (int i = 0, landed_n = 0; landed_n < KILLS && i < 4 * KILLS; i++) {
            int with_old = i % 2;
            unlink(P(jobs[j].out));
            if (with_old) {
                FILE *f = fopen(P(jobs[j].out), "wb");
                assert_non_null(f);
                fputs(old, f);
                assert_int_equal(fclose(f), 0);
            }
            /* every other moment in the last third, where the output is written */
            double t = (i % 2 ? 0.7 + 0.3 * uniform() : uniform()) * t_ref;
            int landed = run_killed(is_attend ? ATTEND(jobs[j].out) : DECAY(jobs[j].out), t);
            if (landed) landed_n++;
            else t_ref = t;   /* faster than the reference: aim earlier */
            int which = atomic_state(jobs[j].out, with_old ? old : NULL, old_len, done, done_len,
                                     t);
            if (!with_old && which == 1) fail_msg("impossible state");
            int temps = remove_temporaries(jobs[j].out, (const char *const[]){ "q.npy", "k.npy",
                "v.npy", "ref.npy", "ref.tsv", "o.npy", "d.tsv", NULL });
            print_message("%s killed at %.3f s%s: %s%s, %d temporary file(s)\n",
                          jobs[j].what, t, landed ? "" : " (after the end)", which == 0 ? "no output" : which == 1
                          ? "the old file untouched" : "the complete new output",
                          with_old ? " (an old file was there)" : "", temps);
        }
        free(done);
    }
#undef ATTEND
#undef DECAY
}

/* ---- group ---------------------------------------------------------------------------------- */
/* Each interruption test starts with an empty directory. */
static int clean(void **state)
{
    (void)state;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlink(P(e->d_name));
    if (d) closedir(d);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    gsl_set_error_handler_off();
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/ropekit-limits-XXXXXX", t && *t ? t : "/tmp");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    rk__alloc_fail_after(-1);
    clean(state);
    rmdir(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attn_sizes_every_kind),
        cmocka_unit_test(test_attn_sizes_performer),
        cmocka_unit_test(test_attn_sizes_fft),
        cmocka_unit_test(test_rope_sizes),
        cmocka_unit_test(test_buffer_sizes),
        cmocka_unit_test(test_view_sizes),
        cmocka_unit_test(test_alloc_failure_everywhere),
        cmocka_unit_test_setup(test_kill_table, clean),
        cmocka_unit_test_setup(test_kill_atomic_outputs, clean),
    };
    return cmocka_run_group_tests_name("limits", tests, setup, teardown);
}
