/* The shape of the code, checked (issue 11): an attention kind is one self-describing unit.
 *
 *  - The footprint of a kind: RK_UNIFORM (every visible key weighs the same, a real if humble
 *    baseline) was added as a new kind would be: one file (lib/uniform.c), one entry in
 *    attn.c's RK_KINDS list, one rk_kind value in ropekit.h, one row in experiments/variant.c,
 *    and no edit to any cmd_*.c; it still appears in `ropekit attend` and `ropekit scaling`.
 *  - Config fields a kind does not read are refused generically (field and kind named).
 *  - rk_attn_resolve fills the same defaults as create, allocating nothing.
 *  - No include cycle in lib/; softmax_kern.h is the softmax files' own.
 *  - The drivers hold no copy of a library rule (default m, FFT length).
 *  - The shared library exports the public rk_ API only. */
#include "check.h"
#include "run_cli.h"

#include <ctype.h>
#include <dirent.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void rk__alloc_fail_after(long n);   /* lib/core.c test hook */

static char root[512];               /* the repository: the parent of RK_TESTS_DIR */

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof root, "%s", RK_TESTS_DIR);
    char *slash = strrchr(root, '/');
    if (slash) *slash = '\0';
    return 0;
}

/* The whole file (NUL-terminated, malloc'd), or NULL. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 65536;
            char *p = realloc(buf, cap);
            if (!p) { free(buf); fclose(f); return NULL; }
            buf = p;
        }
        size_t got = fread(buf + n, 1, 4096, f);
        n += got;
        if (got < 4096) break;
    }
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* Lines of `text` containing `needle`. */
static int lines_with(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); n++) {
        const char *eol = strchr(p, '\n');
        if (!eol) break;
        p = eol + 1;
    }
    return n;
}

typedef struct { char name[64][300]; int n; } names;

/* Source files (.c, .h) of dir whose text contains any of the needles; *matched lists them. */
static void files_with(const char *dir, const char *const *needles, names *matched)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, dir);
    DIR *d = opendir(path);
    assert_non_null(d);
    matched->n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 3 || (strcmp(e->d_name + len - 2, ".c") && strcmp(e->d_name + len - 2, ".h")))
            continue;
        snprintf(path, sizeof path, "%s/%s/%s", root, dir, e->d_name);
        char *text = slurp(path);
        assert_non_null(text);
        for (int i = 0; needles[i]; i++)
            if (strstr(text, needles[i])) {
                assert_true(matched->n < 64);
                snprintf(matched->name[matched->n++], sizeof matched->name[0], "%s", e->d_name);
                break;
            }
        free(text);
    }
    closedir(d);
}

static int has(const names *n, const char *name)
{
    for (int i = 0; i < n->n; i++)
        if (strcmp(n->name[i], name) == 0) return 1;
    return 0;
}

static char *read_src(const char *rel)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    char *t = slurp(path);
    if (!t) fail_msg("cannot read %s", path);
    return t;
}

/* ---- the footprint of a kind ------------------------------------------------------------ */

static void test_kind_footprint(void **state)
{
    (void)state;
    static const char *const lib_ids[] = { "RK_UNIFORM", "uniform_kind", "X(uniform)", NULL };
    names lib, exp;
    files_with("lib", lib_ids, &lib);
    for (int i = 0; i < lib.n; i++)
        if (strcmp(lib.name[i], "uniform.c") && strcmp(lib.name[i], "attn.c") &&
            strcmp(lib.name[i], "ropekit.h"))
            fail_msg("lib/%s names the uniform kind: a kind lives in its own file, the RK_KINDS "
                     "entry and its rk_kind value only", lib.name[i]);
    assert_int_equal(lib.n, 3);
    char *attn = read_src("lib/attn.c"), *hdr = read_src("lib/ropekit.h");
    assert_int_equal(lines_with(attn, "uniform"), 1);     /* the RK_KINDS entry */
    assert_int_equal(lines_with(hdr, "RK_UNIFORM"), 1);   /* the enum value     */
    free(attn);
    free(hdr);
    /* the drivers know the kind by its variant row only (its name "uniform" reaches the
     * commands through the variant table) */
    static const char *const exp_ids[] = { "RK_UNIFORM", NULL };
    files_with("experiments", exp_ids, &exp);
    assert_int_equal(exp.n, 1);
    assert_true(has(&exp, "variant.c"));
}

/* The mean of the visible values, from the command line. */
static void test_kind_in_the_cli(void **state)
{
    (void)state;
    char dir[] = "/tmp/rk_design_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char qp[600], vp[600], op[600], tp[600];
    snprintf(qp, sizeof qp, "%s/q.npy", dir);
    snprintf(vp, sizeof vp, "%s/v.npy", dir);
    snprintf(op, sizeof op, "%s/o.npy", dir);
    snprintf(tp, sizeof tp, "%s/s.tsv", dir);
    const size_t n = 7, d = 4, dv = 3;
    rk_array q, v, o;
    size_t sq[2] = { n, d }, sv[2] = { n, dv };
    assert_rk_ok(rk_array_alloc(&q, RK_F64, 2, sq));
    assert_rk_ok(rk_array_alloc(&v, RK_F64, 2, sv));
    for (size_t i = 0; i < n * d; i++) ((double *)q.data)[i] = sin(1.0 + (double)i);
    for (size_t i = 0; i < n * dv; i++) ((double *)v.data)[i] = cos(0.3 * (double)i);
    assert_rk_ok(rk_npy_save(qp, &q));
    assert_rk_ok(rk_npy_save(vp, &v));
    run_cli_result *r = malloc(sizeof *r);
    assert_non_null(r);
    const char *args[] = { "attend", "--variant", "uniform", "--q", qp, "--k", qp, "--v", vp,
                           "--out", op, "--causal", "--kv-len", "5", NULL };
    if (run_cli(args, NULL, 60, r) != 0) fail_msg("attend --variant uniform: %s", r->err);
    assert_rk_ok(rk_npy_load(op, &o));
    for (size_t i = 0; i < n; i++) {
        size_t vis = i + 1 < 5 ? i + 1 : 5;
        for (size_t c = 0; c < dv; c++) {
            double s = 0.0;
            for (size_t j = 0; j < vis; j++) s += ((double *)v.data)[j * dv + c];
            assert_true(fabs(((double *)o.data)[i * dv + c] - s / (double)vis) < 1e-15);
        }
    }
    const char *sargs[] = { "scaling", "--variants", "uniform", "--n-min", "16", "--n-max", "64",
                            "--repeats", "2", "--out", tp, NULL };
    if (run_cli(sargs, NULL, 120, r) != 0) fail_msg("scaling --variants uniform: %s", r->err);
    char *t = slurp(tp);
    assert_non_null(t);
    assert_true(lines_with(t, "\nuniform\t") >= 3);
    free(t);
    free(r);
    rk_array_free(&q);
    rk_array_free(&v);
    rk_array_free(&o);
    unlink(qp); unlink(vp); unlink(op); unlink(tp);
    rmdir(dir);
}

/* ---- generic refusal of foreign fields ------------------------------------------------------ */

typedef struct {
    const char *name;
    unsigned    group;
    void      (*set)(rk_attn_config *c);
} field_case;

static const double bias7[7] = { 0 };
static void s_scale(rk_attn_config *c) { c->scale = 0.5; }
static void s_nfeat(rk_attn_config *c) { c->n_features = 8; }
static void s_kernel(rk_attn_config *c) { c->kernel = RK_KERNEL_TRIG; }
static void s_proj(rk_attn_config *c) { c->proj = RK_PROJ_IID; }
static void s_map(rk_attn_config *c) { c->map = RK_MAP_RELU; }
static void s_bias(rk_attn_config *c) { c->bias = bias7; c->bias_len = 7; }
static void s_xpos(rk_attn_config *c) { c->xpos_scale_base = 512; }
static void s_l2(rk_attn_config *c) { c->rpe_l2norm = 1; }

static const field_case fcases[] = {
    { "scale", RK_FIELD_SCALE, s_scale },      { "n_features", RK_FIELD_FEATURES, s_nfeat },
    { "kernel", RK_FIELD_KERNEL, s_kernel },   { "proj", RK_FIELD_PROJ, s_proj },
    { "map", RK_FIELD_MAP, s_map },            { "bias", RK_FIELD_BIAS, s_bias },
    { "xpos_scale_base", RK_FIELD_XPOS, s_xpos }, { "rpe_l2norm", RK_FIELD_FFT, s_l2 },
};

static void test_foreign_fields(void **state)
{
    (void)state;
    int refused = 0;
    for (int k = RK_SOFTMAX; rk_attn_kind_name((rk_kind)k); k++) {
        const char *kname = rk_attn_kind_name((rk_kind)k);
        for (size_t i = 0; i < sizeof fcases / sizeof fcases[0]; i++) {
            rk_attn_config c = { .kind = (rk_kind)k, .n_q = 4, .n_kv = 4, .d = 8, .seed = 1 };
            unsigned own = rk_attn_fields(&c);
            fcases[i].set(&c);
            rk_attn *p = (rk_attn *)&c;
            int rc = rk_attn_create(&p, &c);
            const char *msg = rk_last_error();
            if (!(own & fcases[i].group)) {
                if (rc != RK_EINVAL || !strstr(msg, fcases[i].name) || !strstr(msg, kname))
                    fail_msg("%s on %s: %s: '%s' (expected a refusal naming field and kind)",
                             fcases[i].name, kname, rk_strerror(rc), msg);
                assert_null(p);
                refused++;
            } else if (rc == RK_OK) {
                rk_attn_destroy(p);
            } else if (strstr(msg, "does not use it")) {
                fail_msg("%s on %s refused as foreign, but the kind reads it: %s",
                         fcases[i].name, kname, msg);
            }
        }
    }
    assert_true(refused >= 20);
    /* rope modes a kind does not take */
    rk_attn_config c = { .kind = RK_SOFTMAX, .n_q = 4, .n_kv = 4, .d = 8,
                         .rope = RK_ROPE_FEATURES };
    rk_attn *p = NULL;
    assert_rk_error(rk_attn_create(&p, &c), RK_EINVAL);
    assert_non_null(strstr(rk_last_error(), "softmax"));
    c.kind = RK_UNIFORM;
    c.rope = RK_ROPE_QK;
    assert_rk_error(rk_attn_create(&p, &c), RK_EINVAL);
    assert_non_null(strstr(rk_last_error(), "uniform"));
    /* NULL arguments: an error, never a crash */
    assert_rk_error(rk_attn_create(NULL, &c), RK_EINVAL);
    assert_rk_error(rk_attn_create(&p, NULL), RK_EINVAL);
    assert_rk_error(rk_attn_resolve(NULL, NULL), RK_EINVAL);
    assert_int_equal(rk_attn_fields(NULL), 0);
    assert_null(rk_attn_kind_name((rk_kind)0));
}

/* ---- resolve = create's defaults, without allocating ---------------------------------------- */

static void test_resolve(void **state)
{
    (void)state;
    rk_attn_config cs[] = {
        { .kind = RK_SOFTMAX, .n_q = 9, .n_kv = 13, .d = 6, .causal = 1, .rope = RK_ROPE_QK },
        { .kind = RK_PERFORMER, .n_q = 9, .n_kv = 13, .d = 6, .d_v = 3, .seed = 5,
          .kernel = RK_KERNEL_HYPERBOLIC, .rope = RK_ROPE_FEATURES },
        { .kind = RK_LINEAR, .n_q = 9, .n_kv = 13, .d = 6, .map = RK_MAP_RELU },
        { .kind = RK_RPE_FFT, .n_q = 9, .n_kv = 13, .d = 6, .seed = 5, .n_features = 10 },
        { .kind = RK_RPE_FFT, .n_q = 9, .n_kv = 13, .d = 6, .rpe_base = RK_LINEAR },
        { .kind = RK_UNIFORM, .n_q = 9, .n_kv = 13, .d = 6 },
    };
    const size_t want_F[] = { 0, 512, 6, 10, 6, 0 };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        rk_attn_config r = cs[i];
        rk_attn_info info;
        rk__alloc_fail_after(0);                 /* resolve must not allocate */
        int rc = rk_attn_resolve(&r, &info);
        rk__alloc_fail_after(-1);
        if (rc) fail_msg("case %zu: %s", i, rk_last_error());
        assert_int_equal(info.feature_dim, want_F[i]);
        assert_string_equal(info.name, rk_attn_kind_name(cs[i].kind));
        rk_attn *p = NULL;
        assert_rk_ok(rk_attn_create(&p, &cs[i]));
        const rk_attn_config *g = rk_attn_get_config(p);
        assert_int_equal(g->d_v, r.d_v);
        assert_int_equal(g->n_features, r.n_features);
        assert_int_equal(g->nthreads, r.nthreads);
        assert_true(g->scale == r.scale);
        assert_int_equal(rk_attn_get_info(p)->fft_len, info.fft_len);
        assert_int_equal(rk_attn_get_info(p)->fields, info.fields);
        if (cs[i].kind == RK_RPE_FFT) {
            assert_true(info.fft_len >= 9 + 13 - 1);
            assert_int_equal(info.fft_len % 2, 0);
        } else {
            assert_int_equal(info.fft_len, 0);
        }
        rk_attn_destroy(p);
    }
}

/* ---- layering -------------------------------------------------------------------------------- */

/* Local includes ("x.h") of lib/<file>, into out (names). */
static void includes_of(const char *file, names *out)
{
    char rel[256];
    snprintf(rel, sizeof rel, "lib/%s", file);
    char *t = read_src(rel);
    out->n = 0;
    for (char *p = t; (p = strstr(p, "#include \"")); ) {
        p += strlen("#include \"");
        char *q = strchr(p, '"');
        if (!q) break;
        assert_true(out->n < 64);
        snprintf(out->name[out->n++], sizeof out->name[0], "%.*s", (int)(q - p), p);
        p = q;
    }
    free(t);
}

static int visit(const char *file, names *stack)
{
    for (int i = 0; i < stack->n; i++)
        if (strcmp(stack->name[i], file) == 0) {
            fprintf(stderr, "include cycle through lib/%s\n", file);
            return 1;
        }
    char path[1024];
    snprintf(path, sizeof path, "%s/lib/%s", root, file);
    if (access(path, R_OK) != 0) return 0;      /* a system header */
    snprintf(stack->name[stack->n++], sizeof stack->name[0], "%s", file);
    names inc;
    includes_of(file, &inc);
    int bad = 0;
    for (int i = 0; i < inc.n && !bad; i++) bad = visit(inc.name[i], stack);
    stack->n--;
    return bad;
}

static void test_layering(void **state)
{
    (void)state;
    static const char *const all[] = { "", NULL };
    names files;
    files_with("lib", all, &files);
    for (int i = 0; i < files.n; i++) {
        names stack = { .n = 0 };
        if (visit(files.name[i], &stack)) fail_msg("lib/%s is part of an include cycle", files.name[i]);
        names inc;
        includes_of(files.name[i], &inc);
        for (int j = 0; j < inc.n; j++)
            if (strcmp(inc.name[j], "softmax_kern.h") == 0 &&
                strncmp(files.name[i], "softmax", 7) != 0)
                fail_msg("lib/%s includes softmax_kern.h (the softmax files' own)", files.name[i]);
    }
    /* the drivers ask the library for its rules */
    static const char *const rules[] = { "fft_len(", "RK_PERF_DEFAULT_M", "RK_FEATMAP_DEFAULT_M",
                                         "n_features = 256", "F = 256", NULL };
    names drv;
    files_with("experiments", rules, &drv);
    for (int i = 0; i < drv.n; i++)
        fail_msg("experiments/%s restates a library rule (default m or FFT length)", drv.name[i]);
}

/* ---- exports ------------------------------------------------------------------------------- */

static void test_exports(void **state)
{
    (void)state;
    char so[600], cmd[800];
    snprintf(so, sizeof so, "%s", RK_CLI_PATH);
    char *slash = strrchr(so, '/');
    assert_non_null(slash);
    snprintf(slash + 1, sizeof so - (size_t)(slash + 1 - so), "libropekit.so");
    if (access(so, R_OK) != 0) fail_msg("%s is not built (make builds it with the tests)", so);
    snprintf(cmd, sizeof cmd, "nm -D --defined-only '%s'", so);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char line[512];
    int n = 0, bad = 0;
    while (fgets(line, sizeof line, f)) {
        char addr[64], type[8], name[400];
        if (sscanf(line, "%63s %7s %399s", addr, type, name) != 3) continue;
        n++;
        if (strncmp(name, "rk_", 3) != 0) {
            fprintf(stderr, "exported but not public: %s", line);
            bad++;
        }
    }
    assert_int_equal(pclose(f), 0);
    assert_true(n >= 40);
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kind_footprint),
        cmocka_unit_test(test_kind_in_the_cli),
        cmocka_unit_test(test_foreign_fields),
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_layering),
        cmocka_unit_test(test_exports),
    };
    return cmocka_run_group_tests_name("design", tests, setup, NULL);
}
