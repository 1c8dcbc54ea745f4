/* The attention plan: the table of kinds, the validation and defaults common to every kind
 * (including the refusal of config fields a kind does not read), then dispatch to the kind. */
#include "attn_impl.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

/* Every kind built into the library, one entry each: X(name) stands for the description
 * rk__<name>_kind that lib/<file>.c defines (see attn_impl.h). A new kind is this entry, its
 * file and its rk_kind value. */
#define RK_KINDS(X) X(softmax) X(performer) X(linear) X(rpe_fft) X(uniform)

#define RK_KIND_DECLARE(name) extern const rk__attn_kind rk__##name##_kind;
RK_KINDS(RK_KIND_DECLARE)
#define RK_KIND_ENTRY(name) &rk__##name##_kind,
static const rk__attn_kind *const kinds[] = { RK_KINDS(RK_KIND_ENTRY) };
#define NKINDS (sizeof kinds / sizeof kinds[0])

static const rk__attn_kind *kind_of(rk_kind k)
{
    for (size_t i = 0; i < NKINDS; i++)
        if (kinds[i]->kind == k) return kinds[i];
    return NULL;
}

const char *rk_attn_kind_name(rk_kind k)
{
    const rk__attn_kind *ops = kind_of(k);
    return ops ? ops->name : NULL;
}

unsigned rk_attn_kind_fields(rk_kind k)
{
    const rk__attn_kind *ops = kind_of(k);
    return ops ? ops->fields : 0;
}

static unsigned fields_of(const rk__attn_kind *ops, const rk_attn_config *c)
{
    return ops->fields_of ? ops->fields_of(c) : ops->fields;
}

unsigned rk_attn_fields(const rk_attn_config *c)
{
    const rk__attn_kind *ops = c ? kind_of(c->kind) : NULL;
    return ops ? fields_of(ops, c) : 0;
}

/* ------------------------------------------------------------------------------------ */
/* Config fields by group                                                               */
/* ------------------------------------------------------------------------------------ */

/* A field a kind may or may not read: set (nonzero) in c? */
typedef struct {
    const char *name;
    unsigned    group;
    int       (*set)(const rk_attn_config *c);
} field;

static int set_scale(const rk_attn_config *c) { return c->scale != 0.0; }
static int set_freq_dim(const rk_attn_config *c) { return c->rope_freq_dim_head != 0; }
static int set_n_features(const rk_attn_config *c) { return c->n_features != 0; }
static int set_kernel(const rk_attn_config *c) { return c->kernel != 0; }
static int set_proj(const rk_attn_config *c) { return c->proj != 0; }
static int set_proj_norm(const rk_attn_config *c) { return c->proj_norm != 0; }
static int set_proj_data(const rk_attn_config *c) { return c->proj_data != NULL; }
static int set_map(const rk_attn_config *c) { return c->map != 0; }
static int set_bias(const rk_attn_config *c) { return c->bias != NULL; }
static int set_bias_len(const rk_attn_config *c) { return c->bias_len != 0; }
static int set_xpos(const rk_attn_config *c) { return c->xpos_scale_base != 0.0; }
static int set_xpos_gamma(const rk_attn_config *c) { return c->xpos_gamma != 0.0; }
static int set_rpe_base(const rk_attn_config *c) { return c->rpe_base != 0; }
static int set_l2norm(const rk_attn_config *c) { return c->rpe_l2norm != 0; }
static int set_wisdom(const rk_attn_config *c) { return c->fft_wisdom != NULL; }
static int set_align(const rk_attn_config *c) { return c->align != RK_ALIGN_BOTTOM_RIGHT; }
static int set_q_start(const rk_attn_config *c) { return c->q_start != 0; }

static const field fields[] = {
    { "scale",              RK_FIELD_SCALE,         set_scale },
    { "rope_freq_dim_head", RK_FIELD_ROPE_FEATURES, set_freq_dim },
    { "n_features",         RK_FIELD_FEATURES,      set_n_features },
    { "kernel",             RK_FIELD_KERNEL,        set_kernel },
    { "proj",               RK_FIELD_PROJ,          set_proj },
    { "proj_norm",          RK_FIELD_PROJ,          set_proj_norm },
    { "proj_data",          RK_FIELD_PROJ,          set_proj_data },
    { "map",                RK_FIELD_MAP,           set_map },
    { "bias",               RK_FIELD_BIAS,          set_bias },
    { "bias_len",           RK_FIELD_BIAS,          set_bias_len },
    { "xpos_scale_base",    RK_FIELD_XPOS,          set_xpos },
    { "xpos_gamma",         RK_FIELD_XPOS,          set_xpos_gamma },
    { "rpe_base",           RK_FIELD_FFT,           set_rpe_base },
    { "rpe_l2norm",         RK_FIELD_FFT,           set_l2norm },
    { "fft_wisdom",         RK_FIELD_FFT,           set_wisdom },
    { "align",              RK_FIELD_ALIGN,         set_align },
    { "q_start",            RK_FIELD_ALIGN,         set_q_start },
};

/* "softmax, performer" : the kinds whose own field groups include `group`. */
static const char *kinds_with(unsigned group, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < NKINDS && n < len; i++)
        if (kinds[i]->fields & group)
            n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? ", " : "", kinds[i]->name);
    if (!n) snprintf(buf, len, "none");
    return buf;
}

/* Refuse every field the kind does not read, naming field and kind. */
static int refuse_foreign(const rk__attn_kind *ops, const rk_attn_config *c, unsigned own)
{
    char who[128];
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (!(own & fields[i].group) && fields[i].set(c))
            RK_FAIL(RK_EINVAL, "%s is set, but a %s plan does not use it (%s is read by: %s)",
                    fields[i].name, ops->name, fields[i].name,
                    kinds_with(fields[i].group, who, sizeof who));
    if (c->rope != RK_ROPE_NONE && c->rope != RK_ROPE_QK && c->rope != RK_ROPE_FEATURES)
        RK_FAIL(RK_EINVAL, "unknown rope mode %d", (int)c->rope);
    unsigned need = c->rope == RK_ROPE_QK ? RK_FIELD_ROPE_QK
                  : c->rope == RK_ROPE_FEATURES ? RK_FIELD_ROPE_FEATURES : 0;
    if (need && !(own & need))
        RK_FAIL(RK_EINVAL, "rope = %s is not available for a %s plan (it is for: %s)",
                c->rope == RK_ROPE_QK ? "qk" : "features", ops->name,
                kinds_with(need, who, sizeof who));
    if (c->rope_freq_dim_head && c->rope != RK_ROPE_FEATURES)
        RK_FAIL(RK_EINVAL, "%s: rope_freq_dim_head applies to rope = features only", ops->name);
    return RK_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Resolve                                                                              */
/* ------------------------------------------------------------------------------------ */

int rk_attn_resolve(rk_attn_config *c, rk_attn_info *info)
{
    rk__clear_error();
    rk_attn_info tmp;
    if (!info) info = &tmp;
    memset(info, 0, sizeof *info);
    if (!c) RK_FAIL(RK_EINVAL, "attention: NULL config");
    const rk__attn_kind *ops = kind_of(c->kind);
    if (!ops) RK_FAIL(RK_EINVAL, "unknown attention kind %d", (int)c->kind);
    unsigned own = fields_of(ops, c);
    int rc = refuse_foreign(ops, c, own);
    if (rc) return rc;
    if (c->n_q == 0 || c->n_kv == 0)
        RK_FAIL(RK_EDIM, "n_q = %zu and n_kv = %zu must both be > 0", c->n_q, c->n_kv);
    if (c->d == 0) RK_FAIL(RK_EDIM, "d must be > 0");
    if (c->d_v == 0) c->d_v = c->d;
    /* Every size that reaches an int-indexed BLAS call, and every matrix byte count. */
    size_t b;
    if (!rk__fits_int(c->n_q) || !rk__fits_int(c->n_kv) || !rk__fits_int(c->d) ||
        !rk__fits_int(c->d_v) || rk__mul(c->n_q, c->d, &b) || rk__bytes(b, sizeof(double), &b) ||
        rk__mul(c->n_kv, c->d > c->d_v ? c->d : c->d_v, &b) || rk__bytes(b, sizeof(double), &b))
        RK_FAIL(RK_EOVERFLOW, "sizes n_q = %zu, n_kv = %zu, d = %zu, d_v = %zu are too large",
                c->n_q, c->n_kv, c->d, c->d_v);
    if (own & RK_FIELD_SCALE) {
        if (c->scale == 0.0) c->scale = 1.0 / sqrt((double)c->d);
        if (!isfinite(c->scale)) RK_FAIL(RK_EINVAL, "scale must be finite");
    }
    /* explicit alignment (issue 18): q_start bounded so that index and position sums fit */
    if (c->align != RK_ALIGN_BOTTOM_RIGHT && c->align != RK_ALIGN_Q_START)
        RK_FAIL(RK_EINVAL, "%s: unknown align %d", ops->name, (int)c->align);
    if (c->align == RK_ALIGN_BOTTOM_RIGHT && c->q_start != 0)
        RK_FAIL(RK_EINVAL, "%s: q_start = %lld is set, but align is bottom-right (set align = "
                "RK_ALIGN_Q_START to place the queries)", ops->name, (long long)c->q_start);
    if (c->q_start > ((int64_t)1 << 62) || c->q_start < -((int64_t)1 << 62))
        RK_FAIL(RK_EOVERFLOW, "%s: q_start = %lld is beyond +-2^62", ops->name,
                (long long)c->q_start);
    if (c->nthreads < 0) RK_FAIL(RK_EINVAL, "nthreads = %d must be >= 0", c->nthreads);
    if (c->nthreads == 0) c->nthreads = omp_get_max_threads();
    /* batches of heads */
    if (c->batch == 0) c->batch = 1;
    if (c->heads == 0) c->heads = 1;
    if (c->kv_heads == 0) c->kv_heads = c->heads;
    if (c->kv_heads > c->heads || c->heads % c->kv_heads)
        RK_FAIL(RK_EINVAL, "kv_heads = %zu must divide heads = %zu (grouped-query attention)",
                c->kv_heads, c->heads);
    if (rk__mul(c->batch, c->heads, &b) || !rk__fits_int(b))
        RK_FAIL(RK_EOVERFLOW, "batch = %zu x heads = %zu is too large", c->batch, c->heads);
    /* the kernel path: checked against the CPU now, each kind caps it at its widest */
    rk_isa isa;
    if ((rc = rk__isa_pick(c->isa, RK_ISA_AVX512, ops->name, &isa))) return rc;
    c->isa = isa;
    info->name = ops->name;
    info->fields = own;
    return ops->resolve ? ops->resolve(c, info) : RK_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Plans                                                                                */
/* ------------------------------------------------------------------------------------ */

int rk_attn_create(rk_attn **out, const rk_attn_config *cfg)
{
    rk__clear_error();
    if (!out) RK_FAIL(RK_EINVAL, "attention: NULL plan pointer");
    *out = NULL;
    if (!cfg) RK_FAIL(RK_EINVAL, "attention: NULL config");
    rk_attn_config c = *cfg;
    rk_attn_info info;
    int rc = rk_attn_resolve(&c, &info);
    if (rc) return rc;
    const rk__attn_kind *ops = kind_of(c.kind);
    rk_attn *p = rk__alloc(sizeof *p);
    if (!p) RK_FAIL(RK_ENOMEM, "cannot allocate the attention plan");
    p->cfg = c;
    p->info = info;
    p->bytes = rk__alloc_size(sizeof *p);
    p->ops = ops;
    rc = ops->create(p);
    if (!rc && c.kv_heads < c.heads && ops->bwd_f &&
        (!(p->gqa_f = rk__take(&p->bytes, c.n_kv, c.d + c.d_v, sizeof(float), ops->name,
                               "grouped-query gradients", &rc)) ||
         !(p->gqa_d = rk__take(&p->bytes, c.n_kv, c.d + c.d_v, sizeof(double), ops->name,
                               "grouped-query gradients", &rc))))
        rc = rc ? rc : RK_ENOMEM;
    if (rc) { rk_attn_destroy(p); return rc; }
    *out = p;
    return RK_OK;
}

void rk_attn_destroy(rk_attn *p)
{
    if (!p) return;
    p->ops->destroy(p->impl);
    rk__free(p->gqa_f);
    rk__free(p->gqa_d);
    rk__free(p);
}

const rk_attn_config *rk_attn_get_config(const rk_attn *p) { return p ? &p->cfg : NULL; }
const rk_attn_info *rk_attn_get_info(const rk_attn *p) { return p ? &p->info : NULL; }
size_t rk_attn_bytes(const rk_attn *p) { return p ? p->bytes : 0; }

/* ------------------------------------------------------------------------------------ */
/* Execute                                                                              */
/* ------------------------------------------------------------------------------------ */

/* [a, a + an) and [b, b + bn) in bytes overlap? */
static int overlaps(const void *a, size_t an, const void *b, size_t bn)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return an && bn && x < y + bn && y < x + an;
}
static size_t span_bytes(size_t rows, size_t cols, size_t ld, size_t elt)
{
    return rows && cols ? ((rows - 1) * ld + cols) * elt : 0;
}

/* One view as plain numbers, for checks shared by both precisions. */
typedef struct { const void *data; size_t rows, cols, ld; } view;

static int check_views(const rk_attn *p, view q, view k, view v, view out, size_t kv_len,
                       size_t elt)
{
    const rk_attn_config *c = &p->cfg;
    int rc;
    if (c->batch != 1 || c->heads != 1)
        RK_FAIL(RK_EDIM, "%s: the plan is for batch = %zu x heads = %zu: use the batch calls "
                "(rk_attn_execute_batch ...) or a plan with batch = heads = 1", p->ops->name,
                c->batch, c->heads);
    if ((rc = rk__check_view("q", q.data, q.rows, q.cols, q.ld, c->n_q, c->d)) ||
        (rc = rk__check_view("k", k.data, k.rows, k.cols, k.ld, c->n_kv, c->d)) ||
        (rc = rk__check_view("v", v.data, v.rows, v.cols, v.ld, c->n_kv, c->d_v)) ||
        (rc = rk__check_view("out", out.data, out.rows, out.cols, out.ld, c->n_q, c->d_v)))
        return rc;
    if (kv_len != RK_ALL_KEYS && kv_len > c->n_kv)
        RK_FAIL(RK_EDIM, "kv_len = %zu exceeds n_kv = %zu", kv_len, c->n_kv);
    size_t ob = span_bytes(out.rows, out.cols, out.ld, elt);
    if (overlaps(out.data, ob, q.data, span_bytes(q.rows, q.cols, q.ld, elt)) ||
        overlaps(out.data, ob, k.data, span_bytes(k.rows, k.cols, k.ld, elt)) ||
        overlaps(out.data, ob, v.data, span_bytes(v.rows, v.cols, v.ld, elt)))
        RK_FAIL(RK_EINVAL, "out overlaps an input");
    return RK_OK;
}

#define VIEW(m) ((view){ (m)->data, (m)->rows, (m)->cols, (m)->ld })

int rk_attn_execute(rk_attn *p, const rk_mat *q, const rk_mat *k, const rk_mat *v,
                    rk_mat *out, size_t kv_len)
{
    rk__clear_error();
    if (!p || !q || !k || !v || !out) RK_FAIL(RK_EINVAL, "attention execute: NULL argument");
    int rc = check_views(p, VIEW(q), VIEW(k), VIEW(v), VIEW(out), kv_len, sizeof(float));
    if (rc) return rc;
    if (kv_len == RK_ALL_KEYS) kv_len = p->cfg.n_kv;
    if (!p->ops->exec_f) RK_FAIL(RK_EUNSUP, "%s has no float32 path", p->ops->name);
    return p->ops->exec_f(p, q, k, v, out, kv_len);
}

int rk_attn_execute_d(rk_attn *p, const rk_matd *q, const rk_matd *k, const rk_matd *v,
                      rk_matd *out, size_t kv_len)
{
    rk__clear_error();
    if (!p || !q || !k || !v || !out) RK_FAIL(RK_EINVAL, "attention execute: NULL argument");
    int rc = check_views(p, VIEW(q), VIEW(k), VIEW(v), VIEW(out), kv_len, sizeof(double));
    if (rc) return rc;
    if (kv_len == RK_ALL_KEYS) kv_len = p->cfg.n_kv;
    if (!p->ops->exec_d) RK_FAIL(RK_EUNSUP, "%s has no float64 path", p->ops->name);
    return p->ops->exec_d(p, q, k, v, out, kv_len);
}

/* ------------------------------------------------------------------------------------ */
/* RoPE of a plan                                                                       */
/* ------------------------------------------------------------------------------------ */

rk_rope_config rk__attn_rope_cfg(const rk_attn_config *c, size_t dim)
{
    rk_rope_config rc = c->rope_cfg;
    rc.dim = dim;
    if (rc.isa == RK_ISA_AUTO) rc.isa = c->isa;    /* the plan's path, unless set apart */
    /* length-dependent scalings (dynamic, longrope) see the plan's length: HF's largest
     * position + 1, i.e. the position after the last key */
    if (rc.seq_len == 0) {
        int64_t end = c->pos_offset + (int64_t)c->n_kv;
        rc.seq_len = end > 0 ? (size_t)end : 0;
    }
    if (c->rope == RK_ROPE_FEATURES && c->rope_freq_dim_head) {
        /* theta_t = base^(-2t/d) over the head width: base' = base^(r/d) */
        double base = rc.base == 0.0 ? 10000.0 : rc.base;
        size_t r = rc.rotary_dim ? rc.rotary_dim : dim;
        rc.base = pow(base, (double)r / (double)c->d);
    }
    return rc;
}

int rk__attn_rope_check(const rk_attn_config *c, size_t dim, const char *who)
{
    if (c->rope == RK_ROPE_NONE) return RK_OK;
    rk_rope_config rc = rk__attn_rope_cfg(c, dim);
    int feat = c->rope == RK_ROPE_FEATURES;
    int err = rk_rope_resolve(&rc);
    if (err) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", rk_last_error());
        return rk__fail(err, "%s, rope = %s (rotation width %zu%s): %s", who,
                        feat ? "features" : "qk", dim,
                        feat && c->kind == RK_PERFORMER ? " = feature width" : "", msg);
    }
    return RK_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Gradients                                                                            */
/* ------------------------------------------------------------------------------------ */

/* What one head's training forward saves. */
static size_t saved_per_head(const rk_attn *p)
{
    return p->ops->saved_len ? p->ops->saved_len(p) : 0;
}

size_t rk_attn_saved_len(const rk_attn *p)
{
    return p ? saved_per_head(p) * p->cfg.batch * p->cfg.heads : 0;
}

static int check_saved(const rk_attn *p, const void *saved)
{
    if (!saved && rk_attn_saved_len(p))
        RK_FAIL(RK_EINVAL, "%s: saved is NULL but the plan saves %zu values for the backward",
                p->ops->name, rk_attn_saved_len(p));
    return RK_OK;
}

int rk_attn_forward(rk_attn *p, const rk_mat *q, const rk_mat *k, const rk_mat *v, rk_mat *out,
                    size_t kv_len, float *saved)
{
    rk__clear_error();
    if (!p || !q || !k || !v || !out) RK_FAIL(RK_EINVAL, "attention forward: NULL argument");
    int rc = check_views(p, VIEW(q), VIEW(k), VIEW(v), VIEW(out), kv_len, sizeof(float));
    if (!rc) rc = check_saved(p, saved);
    if (rc) return rc;
    if (kv_len == RK_ALL_KEYS) kv_len = p->cfg.n_kv;
    if (!p->ops->bwd_f) RK_FAIL(RK_EUNSUP, "%s has no backward (no training forward)", p->ops->name);
    if (!p->ops->fwd_f) return p->ops->exec_f(p, q, k, v, out, kv_len);
    return p->ops->fwd_f(p, q, k, v, out, kv_len, saved);
}

int rk_attn_forward_d(rk_attn *p, const rk_matd *q, const rk_matd *k, const rk_matd *v,
                      rk_matd *out, size_t kv_len, double *saved)
{
    rk__clear_error();
    if (!p || !q || !k || !v || !out) RK_FAIL(RK_EINVAL, "attention forward: NULL argument");
    int rc = check_views(p, VIEW(q), VIEW(k), VIEW(v), VIEW(out), kv_len, sizeof(double));
    if (!rc) rc = check_saved(p, saved);
    if (rc) return rc;
    if (kv_len == RK_ALL_KEYS) kv_len = p->cfg.n_kv;
    if (!p->ops->bwd_d) RK_FAIL(RK_EUNSUP, "%s has no backward (no training forward)", p->ops->name);
    if (!p->ops->fwd_d) return p->ops->exec_d(p, q, k, v, out, kv_len);
    return p->ops->fwd_d(p, q, k, v, out, kv_len, saved);
}

/* The backward's views: the forward's (q, k, v, out), dout like out, the gradients like their
 * inputs; a gradient may overlap nothing else. */
static int check_grad_views(const rk_attn *p, view q, view k, view v, view out, view dout,
                            view dq, view dk, view dv, size_t kv_len, size_t elt)
{
    const rk_attn_config *c = &p->cfg;
    int rc;
    if ((rc = check_views(p, q, k, v, out, kv_len, elt)) ||
        (rc = rk__check_view("dout", dout.data, dout.rows, dout.cols, dout.ld, c->n_q, c->d_v)) ||
        (rc = rk__check_view("dq", dq.data, dq.rows, dq.cols, dq.ld, c->n_q, c->d)) ||
        (rc = rk__check_view("dk", dk.data, dk.rows, dk.cols, dk.ld, c->n_kv, c->d)) ||
        (rc = rk__check_view("dv", dv.data, dv.rows, dv.cols, dv.ld, c->n_kv, c->d_v)))
        return rc;
    const view all[] = { q, k, v, out, dout, dq, dk, dv };
    static const char *const names[] = { "q", "k", "v", "out", "dout", "dq", "dk", "dv" };
    for (size_t g = 5; g < 8; g++)
        for (size_t o = 0; o < 8; o++) {
            if (o == g) continue;
            if (overlaps(all[g].data, span_bytes(all[g].rows, all[g].cols, all[g].ld, elt),
                         all[o].data, span_bytes(all[o].rows, all[o].cols, all[o].ld, elt)))
                RK_FAIL(RK_EINVAL, "%s overlaps %s", names[g], names[o]);
        }
    return RK_OK;
}

int rk_attn_backward(rk_attn *p, const rk_mat *q, const rk_mat *k, const rk_mat *v,
                     const rk_mat *out, const float *saved, const rk_mat *dout, rk_mat *dq,
                     rk_mat *dk, rk_mat *dv, size_t kv_len)
{
    rk__clear_error();
    if (!p || !q || !k || !v || !out || !dout || !dq || !dk || !dv)
        RK_FAIL(RK_EINVAL, "attention backward: NULL argument");
    int rc = check_grad_views(p, VIEW(q), VIEW(k), VIEW(v), VIEW(out), VIEW(dout), VIEW(dq),
                              VIEW(dk), VIEW(dv), kv_len, sizeof(float));
    if (!rc) rc = check_saved(p, saved);
    if (rc) return rc;
    if (kv_len == RK_ALL_KEYS) kv_len = p->cfg.n_kv;
    if (!p->ops->bwd_f) RK_FAIL(RK_EUNSUP, "%s has no backward", p->ops->name);
    return p->ops->bwd_f(p, q, k, v, out, saved, dout, dq, dk, dv, kv_len);
}

int rk_attn_backward_d(rk_attn *p, const rk_matd *q, const rk_matd *k, const rk_matd *v,
                       const rk_matd *out, const double *saved, const rk_matd *dout,
                       rk_matd *dq, rk_matd *dk, rk_matd *dv, size_t kv_len)
{
    rk__clear_error();
    if (!p || !q || !k || !v || !out || !dout || !dq || !dk || !dv)
        RK_FAIL(RK_EINVAL, "attention backward: NULL argument");
    int rc = check_grad_views(p, VIEW(q), VIEW(k), VIEW(v), VIEW(out), VIEW(dout), VIEW(dq),
                              VIEW(dk), VIEW(dv), kv_len, sizeof(double));
    if (!rc) rc = check_saved(p, saved);
    if (rc) return rc;
    if (kv_len == RK_ALL_KEYS) kv_len = p->cfg.n_kv;
    if (!p->ops->bwd_d) RK_FAIL(RK_EUNSUP, "%s has no backward", p->ops->name);
    return p->ops->bwd_d(p, q, k, v, out, saved, dout, dq, dk, dv, kv_len);
}

/* ------------------------------------------------------------------------------------ */
/* Batches of heads                                                                     */
/* ------------------------------------------------------------------------------------ */

/* One tensor as plain numbers. */
typedef struct { const void *data; size_t b, h, n, d, sb, sh, sn; } tview;
#define TVIEW(t) ((tview){ (t)->data, (t)->b, (t)->h, (t)->n, (t)->d, (t)->sb, (t)->sh, (t)->sn })

/* Shape as the plan says, strides that keep rows apart, the extent in bytes (*lo, *hi). */
static int check_tensor(const char *name, tview t, size_t b, size_t h, size_t n, size_t d,
                        size_t elt, uintptr_t *lo, uintptr_t *hi)
{
    if (t.b != b || t.h != h || t.n != n || t.d != d)
        RK_FAIL(RK_EDIM, "%s is (%zu, %zu, %zu, %zu), expected (%zu, %zu, %zu, %zu)", name, t.b,
                t.h, t.n, t.d, b, h, n, d);
    if (!t.data) RK_FAIL(RK_EINVAL, "%s has NULL data", name);
    if (t.sn < d) RK_FAIL(RK_EDIM, "%s: row stride %zu < %zu columns", name, t.sn, d);
    size_t last = 0, x;
    if (rk__mul(b - 1, t.sb, &x) || rk__add(last, x, &last) || rk__mul(h - 1, t.sh, &x) ||
        rk__add(last, x, &last) || rk__mul(n - 1, t.sn, &x) || rk__add(last, x, &last) ||
        rk__add(last, d, &last) || last > (size_t)PTRDIFF_MAX / elt)
        RK_FAIL(RK_EOVERFLOW, "%s: strides (%zu, %zu, %zu) overflow", name, t.sb, t.sh, t.sn);
    *lo = (uintptr_t)t.data;
    *hi = *lo + last * elt;
    return RK_OK;
}

/* Every tensor of a call: inputs, then outputs (which must overlap nothing else). */
static int check_tensors(const rk_attn *p, const tview *t, const char *const *names, size_t nin,
                         size_t nout, const size_t *kv_len, size_t elt)
{
    const rk_attn_config *c = &p->cfg;
    uintptr_t lo[8], hi[8];
    for (size_t i = 0; i < nin + nout; i++) {
        /* q-like (heads, n_q), kv-like (kv_heads, n_kv); width d or d_v */
        const char *nm = names[i];
        int kv = nm[0] == 'k' || nm[0] == 'v' || !strcmp(nm, "dk") || !strcmp(nm, "dv");
        int wv = nm[0] == 'v' || !strcmp(nm, "out") || !strcmp(nm, "dout") || !strcmp(nm, "dv");
        int rc = check_tensor(nm, t[i], c->batch, kv ? c->kv_heads : c->heads,
                              kv ? c->n_kv : c->n_q, wv ? c->d_v : c->d, elt, &lo[i], &hi[i]);
        if (rc) return rc;
    }
    for (size_t o = nin; o < nin + nout; o++)
        for (size_t i = 0; i < nin + nout; i++)
            if (i != o && lo[o] < hi[i] && lo[i] < hi[o])
                RK_FAIL(RK_EINVAL, "%s overlaps %s", names[o], names[i]);
    if (kv_len)
        for (size_t b = 0; b < c->batch; b++)
            if (kv_len[b] > c->n_kv)
                RK_FAIL(RK_EDIM, "kv_len[%zu] = %zu exceeds n_kv = %zu", b, kv_len[b], c->n_kv);
    return RK_OK;
}

#define KVL(kv_len, b, c) ((kv_len) ? (kv_len)[b] : (c)->n_kv)

/* Execute, the training forward, the backward: per precision, through the kind's batched
 * entry if it has one, else head by head (in order) through its matrix entries. */
#define RK_BATCH_CALLS(SFX, T, MAT, SLICE, REAL, EXEC, FWD, BWD, EXECB, BWDB, GQA)             \
    int rk_attn_execute_batch##SFX(rk_attn *p, const T *q, const T *k, const T *v, T *out,   \
                                   const size_t *kv_len)                                    \
    {                                                                                         \
        rk__clear_error();                                                                    \
        if (!p || !q || !k || !v || !out) RK_FAIL(RK_EINVAL, "attention: NULL argument");     \
        static const char *const nm[] = { "q", "k", "v", "out" };                             \
        const tview t[] = { TVIEW(q), TVIEW(k), TVIEW(v), TVIEW(out) };                       \
        int rc = check_tensors(p, t, nm, 3, 1, kv_len, sizeof(REAL));                         \
        if (rc) return rc;                                                                    \
        const rk_attn_config *c = &p->cfg;                                                    \
        if (p->ops->EXECB) return p->ops->EXECB(p, q, k, v, out, kv_len, NULL);               \
        if (!p->ops->EXEC) RK_FAIL(RK_EUNSUP, "%s has no such path", p->ops->name);           \
        const size_t grp = c->heads / c->kv_heads;                                            \
        for (size_t b = 0; b < c->batch; b++)                                                 \
            for (size_t h = 0; h < c->heads; h++) {                                           \
                MAT qs = SLICE(q, b, h), ks = SLICE(k, b, h / grp), vs = SLICE(v, b, h / grp); \
                MAT os = SLICE(out, b, h);                                                    \
                if ((rc = p->ops->EXEC(p, &qs, &ks, &vs, &os, KVL(kv_len, b, c)))) return rc; \
            }                                                                                 \
        return RK_OK;                                                                         \
    }                                                                                         \
    int rk_attn_forward_batch##SFX(rk_attn *p, const T *q, const T *k, const T *v, T *out,   \
                                   const size_t *kv_len, REAL *saved)                       \
    {                                                                                         \
        rk__clear_error();                                                                    \
        if (!p || !q || !k || !v || !out) RK_FAIL(RK_EINVAL, "attention: NULL argument");     \
        static const char *const nm[] = { "q", "k", "v", "out" };                             \
        const tview t[] = { TVIEW(q), TVIEW(k), TVIEW(v), TVIEW(out) };                       \
        int rc = check_tensors(p, t, nm, 3, 1, kv_len, sizeof(REAL));                         \
        if (!rc) rc = check_saved(p, saved);                                                  \
        if (rc) return rc;                                                                    \
        const rk_attn_config *c = &p->cfg;                                                    \
        if (!p->ops->BWD) RK_FAIL(RK_EUNSUP, "%s has no backward (no training forward)",      \
                                  p->ops->name);                                              \
        if (p->ops->EXECB) return p->ops->EXECB(p, q, k, v, out, kv_len, saved);              \
        const size_t grp = c->heads / c->kv_heads, per = saved_per_head(p);                   \
        for (size_t b = 0; b < c->batch; b++)                                                 \
            for (size_t h = 0; h < c->heads; h++) {                                           \
                MAT qs = SLICE(q, b, h), ks = SLICE(k, b, h / grp), vs = SLICE(v, b, h / grp); \
                MAT os = SLICE(out, b, h);                                                    \
                REAL *sv = per ? saved + (b * c->heads + h) * per : NULL;                     \
                rc = p->ops->FWD ? p->ops->FWD(p, &qs, &ks, &vs, &os, KVL(kv_len, b, c), sv)  \
                                 : p->ops->EXEC(p, &qs, &ks, &vs, &os, KVL(kv_len, b, c));   \
                if (rc) return rc;                                                            \
            }                                                                                 \
        return RK_OK;                                                                         \
    }                                                                                         \
    int rk_attn_backward_batch##SFX(rk_attn *p, const T *q, const T *k, const T *v,          \
                                    const T *out, const REAL *saved, const T *dout, T *dq,   \
                                    T *dk, T *dv, const size_t *kv_len)                       \
    {                                                                                         \
        rk__clear_error();                                                                    \
        if (!p || !q || !k || !v || !out || !dout || !dq || !dk || !dv)                       \
            RK_FAIL(RK_EINVAL, "attention backward: NULL argument");                          \
        static const char *const nm[] = { "q", "k", "v", "out", "dout", "dq", "dk", "dv" };   \
        const tview t[] = { TVIEW(q), TVIEW(k), TVIEW(v), TVIEW(out), TVIEW(dout), TVIEW(dq), \
                            TVIEW(dk), TVIEW(dv) };                                           \
        int rc = check_tensors(p, t, nm, 5, 3, kv_len, sizeof(REAL));                         \
        if (!rc) rc = check_saved(p, saved);                                                  \
        if (rc) return rc;                                                                    \
        const rk_attn_config *c = &p->cfg;                                                    \
        if (!p->ops->BWD) RK_FAIL(RK_EUNSUP, "%s has no backward", p->ops->name);             \
        if (p->ops->BWDB)                                                                     \
            return p->ops->BWDB(p, q, k, v, out, saved, dout, dq, dk, dv, kv_len);            \
        const size_t grp = c->heads / c->kv_heads, per = saved_per_head(p);                   \
        for (size_t b = 0; b < c->batch; b++)                                                 \
            for (size_t h = 0; h < c->heads; h++) {                                           \
                const size_t hk = h / grp;                                                    \
                MAT qs = SLICE(q, b, h), ks = SLICE(k, b, hk), vs = SLICE(v, b, hk);          \
                MAT os = SLICE(out, b, h), gs = SLICE(dout, b, h), dqs = SLICE(dq, b, h);     \
                MAT dks = SLICE(dk, b, hk), dvs = SLICE(dv, b, hk);                           \
                const int first = h % grp == 0;  /* later heads of a group add into it */    \
                MAT tk = { p->GQA, c->n_kv, c->d, c->d };                                     \
                MAT tv = { p->GQA ? p->GQA + c->n_kv * c->d : NULL, c->n_kv, c->d_v, c->d_v }; \
                const REAL *sv = per ? saved + (b * c->heads + h) * per : NULL;               \
                rc = p->ops->BWD(p, &qs, &ks, &vs, &os, sv, &gs, &dqs, first ? &dks : &tk,    \
                                 first ? &dvs : &tv, KVL(kv_len, b, c));                      \
                if (rc) return rc;                                                            \
                if (first) continue;                                                          \
                for (size_t j = 0; j < c->n_kv; j++) {                                        \
                    for (size_t ch = 0; ch < c->d; ch++)                                      \
                        dks.data[j * dks.ld + ch] += tk.data[j * tk.ld + ch];                 \
                    for (size_t ch = 0; ch < c->d_v; ch++)                                    \
                        dvs.data[j * dvs.ld + ch] += tv.data[j * tv.ld + ch];                 \
                }                                                                             \
            }                                                                                 \
        return RK_OK;                                                                         \
    }

RK_BATCH_CALLS(, rk_tensor, rk_mat, rk_tensor_slice, float, exec_f, fwd_f, bwd_f, exec_batch_f,
               bwd_batch_f, gqa_f)
RK_BATCH_CALLS(_d, rk_tensord, rk_matd, rk_tensord_slice, double, exec_d, fwd_d, bwd_d,
               exec_batch_d, bwd_batch_d, gqa_d)
