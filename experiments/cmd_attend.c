/* ropekit attend: attention over .npy Q, K, V.
 *
 * Q is (n_q, d), (h, n_q, d) or (b, h, n_q, d); K (.., n_kv, d) and V (.., n_kv, d_v) have the
 * same leading axes. One plan is made for (n_q, n_kv, d, d_v) and executed on every (b, h)
 * slice through views; the output is (.., n_q, d_v) in the input's dtype. The computation
 * follows the input dtype (float64: rk_attn_execute_d) unless --precision says otherwise, in
 * which case the inputs are converted in and the output converted back. */
#include "cli.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The variants: name, plan kind, and the hook that reads the variant's own options into the
 * plan config (NULL: none). Adding one is a row here (plus its options in opts[]). */
typedef struct {
    const char *name;
    rk_kind     kind;
    void      (*configure)(cli_ctx *c, rk_attn_config *ac);
} variant;

static const variant variants[] = {
    { "softmax", RK_SOFTMAX, NULL },
};
#define NVARIANTS (sizeof variants / sizeof variants[0])

static const cli_opt opts[] = {
    { "variant", "NAME", "attention variant: softmax" },
    { "q", "Q.npy", "queries (n_q, d), (h, n_q, d) or (b, h, n_q, d); float32 or float64" },
    { "k", "K.npy", "keys (.., n_kv, d), same leading axes and dtype as Q" },
    { "v", "V.npy", "values (.., n_kv, d_v), same leading axes and dtype as Q" },
    { "out", "O.npy", "output (.., n_q, d_v), dtype of Q (written atomically)" },
    { "causal", NULL, "query i sees keys j <= i + (n_kv - n_q) (bottom-right aligned)" },
    { "scale", "S", "logit scale, nonzero (default 1/sqrt(d))" },
    { "rope", "MODE", "none (default) or qk: rotate q and k inside attention (RoFormer)" },
    CLI_ROPE_OPTS,
    { "offset", "P", "with --rope qk: key j at position P + j, query i at P + n_kv - n_q + i" },
    { "precision", "float|double", "arithmetic precision (default: the input dtype)" },
    { "kv-len", "L[,L...]", "valid keys per batch entry b (keys j >= L are masked): one\n"
      "value for all, or one per b of (b, h, n, d)" },
    { "threads", "N", "OpenMP threads (default: OMP_NUM_THREADS or all cores)" },
    { "allow-nonfinite", NULL, "accept NaN and Inf in the inputs" },
};

static const cli_spec spec = {
    "attend", "--variant softmax --q Q.npy --k K.npy --v V.npy --out O.npy [options]",
    "Attention out = softmax(scale * Q K^T) V on every (b, h) slice, optionally causal,\n"
    "with RoPE applied to q and k, and with per-batch key lengths.",
    opts, sizeof opts / sizeof opts[0],
};

static const variant *get_variant(cli_ctx *c)
{
    const char *name = cli_required(c, "variant");
    char list[256] = "";
    for (size_t i = 0; i < NVARIANTS; i++) {
        if (strcmp(variants[i].name, name) == 0) return &variants[i];
        size_t n = strlen(list);
        snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", variants[i].name);
    }
    cli_die(c, "unknown variant '%s' (expected: %s)", name, list);
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

int cmd_attend(int argc, char **argv)
{
    static const char *const rope_modes[] = { "none", "qk", NULL };
    static const char *const precisions[] = { "float", "double", NULL };
    static const char *const rope_opts[] = { "style", "base", "rotary-dim", "scaling", "offset",
                                             NULL };
    cli_ctx c;
    cli_parse(&c, &spec, argc, argv);

    /* 1. Options, all checked before any file is read. */
    const variant *var = get_variant(&c);
    const char *q_path = cli_required(&c, "q");
    cli_required(&c, "k");
    cli_required(&c, "v");
    cli_required(&c, "out");
    rk_attn_config ac = { 0 };
    ac.kind = var->kind;
    ac.causal = cli_flag(&c, "causal");
    if (cli_get(&c, "scale")) {
        ac.scale = cli_get_double(&c, "scale", 0.0, -INFINITY, INFINITY, 0);
        if (ac.scale == 0.0) cli_die(&c, "--scale must be nonzero (0 would mean the default)");
    }
    ac.rope = cli_get_choice(&c, "rope", "--rope mode", rope_modes, 0) == 1 ? RK_ROPE_QK
                                                                          : RK_ROPE_NONE;
    cli_rope_config(&c, &ac.rope_cfg);
    ac.pos_offset = cli_get_integer(&c, "offset", 0, INT64_MIN, INT64_MAX);
    if (ac.rope == RK_ROPE_NONE)
        for (int i = 0; rope_opts[i]; i++)
            if (cli_flag(&c, rope_opts[i]))
                cli_die(&c, "--%s has no effect without --rope qk", rope_opts[i]);
    int precision = cli_get_choice(&c, "precision", "precision", precisions, -1);
    ac.nthreads = (int)cli_get_integer(&c, "threads", 0, 1, 4096);
    if (var->configure) var->configure(&c, &ac);

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
    if (ac.rope == RK_ROPE_QK) {
        char what[600];
        snprintf(what, sizeof what, "--q %s", q_path);
        cli_check_rope_dim(&c, &ac.rope_cfg, ac.d, what);
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

    /* 5. Output in the input dtype. */
    rk_array back;   /* at function scope: cli_finish frees it */
    if (work != in_dtype) {
        cli_convert(&c, &out, in_dtype, &back);
        cli_save_npy(&c, "out", &back);
    } else {
        cli_save_npy(&c, "out", &out);
    }
    return cli_finish(&c);
}
