/* ropekit attend: attention over .npy Q, K, V.
 *
 * Q is (n_q, d), (h, n_q, d) or (b, h, n_q, d); K (.., n_kv, d) and V (.., n_kv, d_v) have the
 * same leading axes. One plan is made for (n_q, n_kv, d, d_v) and executed on every (b, h)
 * slice through views; the output is (.., n_q, d_v) in the input's dtype. The computation
 * follows the input dtype (float64: rk_attn_execute_d) unless --precision says otherwise, in
 * which case the inputs are converted in and the output converted back.
 *
 * Variants come from experiments/variant.c: the base names softmax, performer and linear
 * (= linear-elu with --map free) take --rope, --kernel, --map as options; every other name of
 * that table fixes its rope mode (and map) and accepts only options that agree. Options that
 * do not apply to the chosen variant are errors. FAVOR+ draws its projection from --seed
 * (default VARIANT_DEFAULT_SEED = 1), so runs are deterministic; --proj W.npy gives the
 * projection instead, --save-proj writes the one used (only if the whole run succeeds). */
#include "cli.h"
#include "variant.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const cli_opt opts[] = {
    { "variant", "NAME", "softmax | performer | linear, or a named variant (listed above)" },
    { "q", "Q.npy", "queries (n_q, d), (h, n_q, d) or (b, h, n_q, d); float32 or float64" },
    { "k", "K.npy", "keys (.., n_kv, d), same leading axes and dtype as Q" },
    { "v", "V.npy", "values (.., n_kv, d_v), same leading axes and dtype as Q" },
    { "out", "O.npy", "output (.., n_q, d_v), dtype of Q (written atomically)" },
    { "causal", NULL, "query i sees keys j <= i + (n_kv - n_q) (bottom-right aligned)" },
    { "scale", "S", "logit scale, nonzero; > 0 for performer (default 1/sqrt(d))" },
    { "rope", "MODE", "none (default); qk: rotate q and k inside attention (RoFormer);\n"
      "features: rotate the feature vectors, numerator only (eq. 19; performer, linear)" },
    CLI_ROPE_OPTS,
    { "offset", "P", "with --rope: key j at position P + j, query i at P + n_kv - n_q + i" },
    { "freq-dim", "features|head", "--rope features: theta_i = B^(-2i/F) over the feature\n"
      "width F (default) or B^(-2i/d) over the head width" },
    { "features", "M", "performer: number of random features m (default 256)" },
    { "kernel", "KIND", "performer: positive (default) | hyperbolic | trig" },
    { "iid", NULL, "performer: independent Gaussian projection rows" },
    { "orthogonal", NULL, "performer: orthogonal blocks of rows (the default)" },
    { "fixed-norm", NULL, "performer: rows of length sqrt(d) instead of chi(d) norms" },
    { "seed", "S", "performer: seed of the projection, >= 1 (default 1)" },
    { "proj", "W.npy", "performer: use this (m, d) projection (fixes the features; m = rows)" },
    { "save-proj", "W.npy", "performer: write the (m, d) projection used, float32 (atomic;\n"
      "only if the whole run succeeds)" },
    { "map", "elu|relu", "linear: feature map elu(x)+1 (default) or relu(x)" },
    { "precision", "float|double", "arithmetic precision (default: the input dtype)" },
    { "kv-len", "L[,L...]", "valid keys per batch entry b (keys j >= L are masked): one\n"
      "value for all, or one per b of (b, h, n, d)" },
    { "threads", "N", "OpenMP threads (default: OMP_NUM_THREADS or all cores)" },
    { "allow-nonfinite", NULL, "accept NaN and Inf in the inputs" },
};

static char description[2048];
static cli_spec spec = {
    "attend", "--variant NAME --q Q.npy --k K.npy --v V.npy --out O.npy [options]",
    description, opts, sizeof opts / sizeof opts[0],
};

static void make_description(void)
{
    size_t n = (size_t)snprintf(description, sizeof description,
        "Attention on every (b, h) slice, optionally causal, with per-batch key lengths:\n"
        "  softmax    out = softmax(scale Q K^T) V (exact)\n"
        "  performer  FAVOR+ random features (Choromanski et al.); seed 1 unless --seed\n"
        "  linear     linear attention with elu(x)+1 or relu(x) features (Katharopoulos et al.)\n"
        "Named variants (the names ropekit scaling and approx use; each fixes its rope mode):");
    for (size_t i = 0; i < variant_count() && n < sizeof description; i++)
        n += (size_t)snprintf(description + n, sizeof description - n, "\n  %-26s %s",
                              variant_at(i)->name, variant_at(i)->summary);
}

/* The chosen variant: its table row, and whether the name fixes the rope mode and the map. */
typedef struct {
    const variant *row;
    int fixed_rope, fixed_map;
} choice;

static choice get_variant(cli_ctx *c)
{
    const char *name = cli_required(c, "variant");
    choice ch = { NULL, 1, 1 };
    if (strcmp(name, "softmax") == 0 || strcmp(name, "performer") == 0) {
        ch.row = variant_find(name);
        ch.fixed_rope = ch.fixed_map = 0;
    } else if (strcmp(name, "linear") == 0) {
        ch.row = variant_find("linear-elu");
        ch.fixed_rope = ch.fixed_map = 0;
    } else {
        ch.row = variant_find(name);
        ch.fixed_map = ch.row && ch.row->kind == RK_LINEAR;
    }
    if (!ch.row) {
        char list[1024];
        cli_die(c, "unknown variant '%s' (expected: softmax, performer, linear, or one of: %s)",
                name, variant_names(list, sizeof list));
    }
    return ch;
}

static const char *rope_name(rk_rope_mode r)
{
    return r == RK_ROPE_QK ? "qk" : r == RK_ROPE_FEATURES ? "features" : "none";
}

/* --kv-len "L" or "L1,L2,...": every value in [0, n_kv]; returns the count (array in *out,
 * freed at exit). */
static size_t parse_kv_len(cli_ctx *c, const char *s, size_t n_kv, size_t **out)
{
    size_t n = 1;
    for (const char *p = s; *p; p++) n += *p == ',';
    size_t *L = calloc(n, sizeof *L);
    if (!L) cli_die(c, "--kv-len: out of memory");
    cli_defer(c, free, L);
    size_t len = strlen(s);
    char *buf = malloc(len + 1);
    if (!buf) cli_die(c, "--kv-len: out of memory");
    cli_defer(c, free, buf);
    memcpy(buf, s, len + 1);
    char *p = buf;
    for (size_t i = 0; i < n; i++) {
        char *comma = strchr(p, ',');
        if (comma) *comma = '\0';
        long long x = cli_integer(c, "--kv-len", p);
        if (x < 0) cli_die(c, "--kv-len %s must be >= 0", p);
        if ((unsigned long long)x > n_kv) cli_die(c, "--kv-len %s exceeds n_kv = %zu", p, n_kv);
        L[i] = (size_t)x;
        p = comma ? comma + 1 : p;
    }
    *out = L;
    return n;
}

/* Shapes: Q (.., n_q, d), K (.., n_kv, d), V (.., n_kv, d_v), with identical leading axes. */
static void check_shapes(cli_ctx *c, const rk_array *q, const rk_array *k, const rk_array *v)
{
    char sq[160], sk[160], sv[160];
    const char *pq = cli_get(c, "q"), *pk = cli_get(c, "k"), *pv = cli_get(c, "v");
    cli_shape_str(q, sq, sizeof sq);
    cli_shape_str(k, sk, sizeof sk);
    cli_shape_str(v, sv, sizeof sv);
    if (k->dtype != q->dtype)
        cli_die(c, "--k: %s is %s but %s is %s (Q, K and V must share a dtype)", pk,
                cli_dtype_name(k->dtype), pq, cli_dtype_name(q->dtype));
    if (v->dtype != q->dtype)
        cli_die(c, "--v: %s is %s but %s is %s (Q, K and V must share a dtype)", pv,
                cli_dtype_name(v->dtype), pq, cli_dtype_name(q->dtype));
    int nd = q->ndim;
    if (nd < 2 || nd > 4)
        cli_die(c, "--q: %s has shape %s: expected (n_q, d), (h, n_q, d) or (b, h, n_q, d)",
                pq, sq);
    if (q->shape[nd - 2] == 0 || q->shape[nd - 1] == 0)
        cli_die(c, "--q: %s has shape %s: n_q and d must be > 0", pq, sq);
    const size_t d = q->shape[nd - 1];
    if (k->ndim != nd || memcmp(k->shape, q->shape, (size_t)(nd - 2) * sizeof(size_t)) != 0)
        cli_die(c, "--k: %s has shape %s but q has shape %s (the leading axes must match)",
                pk, sk, sq);
    if (k->shape[nd - 1] != d)
        cli_die(c, "--k: %s has shape %s but q has d = %zu", pk, sk, d);
    const size_t n_kv = k->shape[nd - 2];
    if (n_kv == 0) cli_die(c, "--k: %s has shape %s: n_kv must be > 0", pk, sk);
    if (v->ndim != nd || memcmp(v->shape, q->shape, (size_t)(nd - 2) * sizeof(size_t)) != 0)
        cli_die(c, "--v: %s has shape %s but q has shape %s (the leading axes must match)",
                pv, sv, sq);
    if (v->shape[nd - 2] != n_kv)
        cli_die(c, "--v: %s has shape %s but k has n_kv = %zu", pv, sv, n_kv);
    if (v->shape[nd - 1] == 0) cli_die(c, "--v: %s has shape %s: d_v must be > 0", pv, sv);
}

/* Options that only some kinds take: the message names who takes them. */
static void check_applicable(cli_ctx *c, rk_kind kind)
{
    static const char *const perf_only[] = { "features", "kernel", "iid", "orthogonal",
                                             "fixed-norm", "seed", "proj", "save-proj", NULL };
    for (int i = 0; perf_only[i]; i++)
        if (kind != RK_PERFORMER && cli_flag(c, perf_only[i]))
            cli_die(c, "--%s applies to --variant performer only (%s)", perf_only[i],
                    kind == RK_SOFTMAX ? "exact softmax has no features"
                    : strcmp(perf_only[i], "features") == 0
                        ? "the linear feature width is d"
                        : "linear attention has no random projection");
    if (kind != RK_LINEAR && cli_flag(c, "map"))
        cli_die(c, "--map applies to --variant linear only (%s)",
                kind == RK_PERFORMER ? "FAVOR+ takes --kernel" : "exact softmax has no features");
    if (cli_flag(c, "iid") && cli_flag(c, "orthogonal"))
        cli_die(c, "--iid and --orthogonal exclude each other");
    if (cli_flag(c, "proj")) {
        static const char *const drawn[] = { "seed", "iid", "orthogonal", "fixed-norm", NULL };
        for (int i = 0; drawn[i]; i++)
            if (cli_flag(c, drawn[i]))
                cli_die(c, "--%s has no effect with --proj (the projection is given, not drawn)",
                        drawn[i]);
    }
}

static void free_mat(void *p) { rk_mat_free(p); }

/* The projection of --proj for rows of width d (freed at exit); its m must agree with
 * --features if that is given too. */
static void load_proj(cli_ctx *c, size_t d, rk_mat *w)
{
    const char *path = cli_get(c, "proj");
    int rc = rk_attn_proj_load(path, d, w);
    if (rc) {
        const char *msg = rk_last_error();
        if (!msg[0]) msg = rk_strerror(rc);
        if (strstr(msg, path)) cli_die(c, "--proj: %s", msg);
        cli_die(c, "--proj: '%s': %s", path, msg);
    }
    cli_defer(c, free_mat, w);
    const char *fs = cli_get(c, "features");
    if (fs && (size_t)cli_integer(c, "--features", fs) != w->rows)
        cli_die(c, "--features %s but --proj %s has m = %zu rows", fs, path, w->rows);
}

static void unlink_path(void *p) { unlink((const char *)p); }

int cmd_attend(int argc, char **argv)
{
    static const char *const rope_modes[] = { "none", "qk", "features", NULL };
    static const char *const precisions[] = { "float", "double", NULL };
    static const char *const kernels[] = { "positive", "hyperbolic", "trig", NULL };
    static const char *const maps[] = { "elu", "relu", NULL };
    static const char *const freq_dims[] = { "features", "head", NULL };
    static const char *const rope_opts[] = { "style", "base", "rotary-dim", "scaling", "offset",
                                             "freq-dim", NULL };
    cli_ctx c;
    make_description();
    cli_parse(&c, &spec, argc, argv);

    /* 1. Options, all checked before any file is read. */
    const choice ch = get_variant(&c);
    const rk_kind kind = ch.row->kind;
    const char *q_path = cli_required(&c, "q");
    cli_required(&c, "k");
    cli_required(&c, "v");
    const char *out_path = cli_required(&c, "out");
    check_applicable(&c, kind);

    size_t m = (size_t)cli_get_integer(&c, "features", 0, 1, INT32_MAX / 2);
    unsigned long seed = (unsigned long)cli_get_integer(&c, "seed", (long long)VARIANT_DEFAULT_SEED,
                                                        1, INT64_MAX);
    rk_attn_config ac;
    if (variant_fill(ch.row, 0, 0, 0, 0, cli_flag(&c, "causal"), m, seed, &ac))
        cli_die(&c, "internal error: variant '%s' cannot be set up", ch.row->name);
    if (cli_get(&c, "scale")) {
        ac.scale = cli_get_double(&c, "scale", 0.0, -INFINITY, INFINITY, 0);
        if (ac.scale == 0.0) cli_die(&c, "--scale must be nonzero (0 would mean the default)");
        if (kind == RK_PERFORMER && ac.scale < 0.0)
            cli_die(&c, "--scale %s must be > 0 for performer (FAVOR+ uses sqrt(scale))",
                    cli_get(&c, "scale"));
    }
    int rope_i = cli_get_choice(&c, "rope", "--rope mode", rope_modes, -1);
    if (rope_i >= 0) {
        rk_rope_mode want = rope_i == 1 ? RK_ROPE_QK : rope_i == 2 ? RK_ROPE_FEATURES
                                                                  : RK_ROPE_NONE;
        if (ch.fixed_rope && want != ac.rope)
            cli_die(&c, "--rope %s: variant '%s' fixes the rope mode to %s (use --variant %s "
                    "with --rope)", rope_modes[rope_i], ch.row->name, rope_name(ac.rope),
                    kind == RK_SOFTMAX ? "softmax" : kind == RK_PERFORMER ? "performer"
                                                                          : "linear");
        ac.rope = want;
    }
    if (ac.rope == RK_ROPE_FEATURES && kind == RK_SOFTMAX)
        cli_die(&c, "--rope features rotates feature vectors: use --variant performer or "
                "linear (softmax takes --rope qk)");
    cli_rope_config(&c, &ac.rope_cfg);
    ac.pos_offset = cli_get_integer(&c, "offset", 0, INT64_MIN, INT64_MAX);
    if (ac.rope == RK_ROPE_NONE)
        for (int i = 0; rope_opts[i]; i++)
            if (cli_flag(&c, rope_opts[i]))
                cli_die(&c, "--%s has no effect without --rope", rope_opts[i]);
    if (cli_flag(&c, "freq-dim") && ac.rope != RK_ROPE_FEATURES)
        cli_die(&c, "--freq-dim applies to --rope features only");
    ac.rope_freq_dim_head = cli_get_choice(&c, "freq-dim", "--freq-dim", freq_dims, 0) == 1;
    if (kind == RK_PERFORMER) {
        ac.kernel = (rk_kernel)cli_get_choice(&c, "kernel", "kernel", kernels, RK_KERNEL_POSITIVE);
        ac.proj = cli_flag(&c, "iid") ? RK_PROJ_IID : RK_PROJ_ORTHOGONAL;
        ac.proj_norm = cli_flag(&c, "fixed-norm") ? RK_NORM_FIXED : RK_NORM_CHI;
        /* an odd m with positive features gives an odd feature width (checked again with
         * --proj, whose m is known only after loading) */
        if (ac.rope == RK_ROPE_FEATURES && ac.kernel == RK_KERNEL_POSITIVE && m % 2)
            cli_die(&c, "--rope features rotates the features in pairs, but --features %zu gives "
                    "an odd feature width (use an even m, or --kernel hyperbolic|trig: 2m)", m);
    }
    if (kind == RK_LINEAR) {
        int mi = cli_get_choice(&c, "map", "--map", maps, -1);
        if (mi >= 0) {
            rk_map want = mi == 1 ? RK_MAP_RELU : RK_MAP_ELU;
            if (ch.fixed_map && want != ac.map)
                cli_die(&c, "--map %s: variant '%s' fixes the map to %s (use --variant linear "
                        "--map %s)", maps[mi], ch.row->name, maps[ac.map == RK_MAP_RELU],
                        maps[mi]);
            ac.map = want;
        }
    }
    const char *save_proj = cli_get(&c, "save-proj");
    if (save_proj && strcmp(save_proj, out_path) == 0)
        cli_die(&c, "--save-proj and --out name the same file '%s'", out_path);
    int precision = cli_get_choice(&c, "precision", "precision", precisions, -1);
    ac.nthreads = (int)cli_get_integer(&c, "threads", 0, 1, 4096);

    /* 2. Inputs. */
    rk_array q, k, v;
    cli_load_npy(&c, "q", &q);
    cli_load_npy(&c, "k", &k);
    cli_load_npy(&c, "v", &v);
    check_shapes(&c, &q, &k, &v);
    const int nd = q.ndim;
    ac.n_q = q.shape[nd - 2];
    ac.d = q.shape[nd - 1];
    ac.n_kv = k.shape[nd - 2];
    ac.d_v = v.shape[nd - 1];
    rk_mat proj = { 0 };   /* at function scope: freed by cli_finish */
    if (cli_flag(&c, "proj")) {
        load_proj(&c, ac.d, &proj);
        ac.proj_data = proj.data;
        ac.n_features = proj.rows;
        if (ac.rope == RK_ROPE_FEATURES && ac.kernel == RK_KERNEL_POSITIVE && proj.rows % 2)
            cli_die(&c, "--rope features rotates the features in pairs, but --proj %s has an "
                    "odd m = %zu (positive features: width m)", cli_get(&c, "proj"), proj.rows);
    }
    if (ac.rope != RK_ROPE_NONE) {
        char what[600];
        snprintf(what, sizeof what, "--q %s", q_path);
        if (ac.rope == RK_ROPE_QK) {
            cli_check_rope_dim(&c, &ac.rope_cfg, ac.d, what);
        } else {
            /* the rotation acts on the F features: m or 2m (FAVOR+), d (linear) */
            size_t F = variant_feature_dim(&ac);
            if (kind == RK_PERFORMER && F == 0) F = 256;   /* library default m */
            if (F % 2)
                cli_die(&c, "--rope features rotates the features in pairs, but the feature "
                        "width is d = %zu of %s (odd)", F, what);
            if (ac.rope_cfg.rotary_dim > F)
                cli_die(&c, "--rotary-dim %zu exceeds the feature width %zu (--rope features "
                        "rotates the features)", ac.rope_cfg.rotary_dim, F);
            if (ac.rope_cfg.scaling == RK_SCALE_NTK &&
                (ac.rope_cfg.rotary_dim ? ac.rope_cfg.rotary_dim : F) <= 2)
                cli_die(&c, "--scaling ntk needs a rotary dimension > 2");
        }
        int64_t last = (int64_t)(ac.n_kv > ac.n_q ? ac.n_kv : ac.n_q) - 1;
        if (ac.pos_offset > 0 && ac.pos_offset > INT64_MAX - last)
            cli_die(&c, "--offset %lld: the last position overflows a 64-bit integer",
                    (long long)ac.pos_offset);
    }
    cli_check_finite(&c, "q", &q);
    cli_check_finite(&c, "k", &k);
    cli_check_finite(&c, "v", &v);

    /* Batch entries (axis b of (b, h, n, d)), heads per entry, and (b, h) slices. */
    size_t batch = nd == 4 ? q.shape[0] : 1;
    size_t slices = 1;
    for (int i = 0; i < nd - 2; i++) slices *= q.shape[i];
    size_t heads = slices / batch;
    size_t *kv_len = NULL, n_kv_len = 0;
    const char *kv_str = cli_get(&c, "kv-len");
    if (kv_str) {
        n_kv_len = parse_kv_len(&c, kv_str, ac.n_kv, &kv_len);
        if (n_kv_len != 1 && n_kv_len != batch)
            cli_die(&c, "--kv-len has %zu values but the batch has %zu entr%s (give one value, "
                    "or one per b of (b, h, n, d))", n_kv_len, batch, batch == 1 ? "y" : "ies");
    }

    /* 3. Precision: convert the inputs if the arithmetic differs from the input dtype. */
    const rk_dtype in_dtype = q.dtype;
    const rk_dtype work = precision < 0 ? in_dtype : precision == 0 ? RK_F32 : RK_F64;
    const rk_array *wq = &q, *wk = &k, *wv = &v;
    rk_array cq, ck, cv;
    if (work != in_dtype) {
        cli_convert(&c, &q, work, &cq);
        cli_convert(&c, &k, work, &ck);
        cli_convert(&c, &v, work, &cv);
        /* float64 values beyond float32's range would become Inf. */
        cli_check_finite(&c, "q", &cq);
        cli_check_finite(&c, "k", &ck);
        cli_check_finite(&c, "v", &cv);
        wq = &cq, wk = &ck, wv = &cv;
    }
    rk_array out;
    size_t out_shape[4];
    memcpy(out_shape, q.shape, (size_t)nd * sizeof(size_t));
    out_shape[nd - 1] = ac.d_v;
    memset(&out, 0, sizeof out);
    int err = rk_array_alloc(&out, work, nd, out_shape);
    if (err) cli_die_rk(&c, err, "cannot allocate the output");
    cli_defer_array(&c, &out);

    /* 4. One plan, executed on every (b, h) slice through views. */
    rk_attn *plan;
    err = rk_attn_create(&plan, &ac);
    if (err) cli_die_rk(&c, err, "cannot create the attention plan");
    cli_defer_attn(&c, plan);
    const size_t nq = ac.n_q, nkv = ac.n_kv, d = ac.d, dv = ac.d_v;
    for (size_t s = 0; s < slices; s++) {
        size_t L = !kv_len ? RK_ALL_KEYS : kv_len[n_kv_len == 1 ? 0 : s / heads];
        if (work == RK_F32) {
            rk_mat qs = rk_mat_view((float *)wq->data + s * nq * d, nq, d, d);
            rk_mat ks = rk_mat_view((float *)wk->data + s * nkv * d, nkv, d, d);
            rk_mat vs = rk_mat_view((float *)wv->data + s * nkv * dv, nkv, dv, dv);
            rk_mat os = rk_mat_view((float *)out.data + s * nq * dv, nq, dv, dv);
            err = rk_attn_execute(plan, &qs, &ks, &vs, &os, L);
        } else {
            rk_matd qs = rk_matd_view((double *)wq->data + s * nq * d, nq, d, d);
            rk_matd ks = rk_matd_view((double *)wk->data + s * nkv * d, nkv, d, d);
            rk_matd vs = rk_matd_view((double *)wv->data + s * nkv * dv, nkv, dv, dv);
            rk_matd os = rk_matd_view((double *)out.data + s * nq * dv, nq, dv, dv);
            err = rk_attn_execute_d(plan, &qs, &ks, &vs, &os, L);
        }
        if (err) cli_die_rk(&c, err, "attention failed");
    }

    /* 5. The projection (under a temporary name), the output in the input dtype, then the
     * projection renamed into place: both files appear only if the run succeeds. */
    char proj_tmp[4096];
    if (save_proj) {
        if (snprintf(proj_tmp, sizeof proj_tmp, "%s.part%ld", save_proj, (long)getpid()) >=
            (int)sizeof proj_tmp)
            cli_die(&c, "--save-proj: path too long");
        err = rk_attn_proj_save(plan, proj_tmp);
        if (err) {
            const char *msg = rk_last_error();
            cli_die(&c, "--save-proj: '%s': %s", save_proj, msg[0] ? msg : rk_strerror(err));
        }
        cli_defer(&c, unlink_path, proj_tmp);
    }
    rk_array back;   /* at function scope: cli_finish frees it */
    if (work != in_dtype) {
        cli_convert(&c, &out, in_dtype, &back);
        cli_save_npy(&c, "out", &back);
    } else {
        cli_save_npy(&c, "out", &out);
    }
    if (save_proj && rename(proj_tmp, save_proj) != 0)
        cli_die(&c, "--save-proj: cannot rename into '%s'", save_proj);
    return cli_finish(&c);
}
