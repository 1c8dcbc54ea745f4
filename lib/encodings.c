/* Classic position encodings and relative biases, for comparison with RoPE (issue 6):
 * sinusoidal absolute encoding (RoFormer eq. 4), T5 relative buckets (eq. 8), ALiBi slopes and
 * biases, xPos factors; and the check of cfg.bias shared by softmax.c and rpe_fft.c.
 * Conventions (offset t = key position - query position, array layout) are in ropekit.h,
 * section "Position encodings and relative biases".
 */
#include "attn_impl.h"

#include <math.h>
#include <stdint.h>

size_t rk_bias_len(size_t n_q, size_t n_kv)
{
    size_t s;
    if (n_q == 0 || n_kv == 0 || rk__add(n_q, n_kv, &s)) return 0;
    return s - 1;
}

/* Offset of bias index idx of a plan with n_kv keys: t = idx - (n_kv - 1). */
static long long offset_of(size_t idx, size_t n_kv)
{
    return (long long)idx - (long long)(n_kv - 1);
}

int rk__bias_check(const rk_attn_config *c, const char *who, int softmax)
{
    if (!c->bias) {
        if (c->bias_len)
            RK_FAIL(RK_EINVAL, "%s: bias_len = %zu but bias is NULL", who, c->bias_len);
        return RK_OK;
    }
    size_t want = rk_bias_len(c->n_q, c->n_kv);
    if (c->bias_len != want)
        RK_FAIL(RK_EDIM, "%s: bias has bias_len = %zu values; an n_q = %zu, n_kv = %zu plan needs "
                "rk_bias_len = n_q + n_kv - 1 = %zu (offsets -(n_kv-1) .. n_q-1, most negative "
                "first)", who, c->bias_len, c->n_q, c->n_kv, want);
    for (size_t i = 0; i < want; i++) {
        double b = c->bias[i];
        if (isnan(b) || b == INFINITY)
            RK_FAIL(RK_ENONFINITE, "%s: bias[%zu] (offset %lld) = %g; entries must be finite or "
                    "-inf", who, i, offset_of(i, c->n_kv), b);
        if (softmax && b > 1e30)
            RK_FAIL(RK_EINVAL, "%s: bias[%zu] (offset %lld) = %g exceeds 1e30 (float32 logits "
                    "would overflow)", who, i, offset_of(i, c->n_kv), b);
    }
    return RK_OK;
}

/* ------------------------------------------------------------------------------------ */
/* T5 buckets                                                                           */
/* ------------------------------------------------------------------------------------ */

typedef struct {
    size_t side;       /* buckets of one side (nb)                                  */
    size_t max_exact;  /* nb / 2                                                     */
    float  lograt;     /* (float) log(max_distance / max_exact)                      */
    int    bidir;
} t5_params;

static int t5_setup(int bidirectional, size_t num_buckets, size_t max_distance, t5_params *p)
{
    if (num_buckets == 0) num_buckets = RK_T5_NUM_BUCKETS;
    if (max_distance == 0) max_distance = RK_T5_MAX_DISTANCE;
    p->bidir = bidirectional != 0;
    p->side = p->bidir ? num_buckets / 2 : num_buckets;
    p->max_exact = p->side / 2;
    if (p->max_exact < 1)
        RK_FAIL(RK_EINVAL, "t5: num_buckets = %zu is too small (at least %d %s)", num_buckets,
                p->bidir ? 4 : 2, p->bidir ? "bidirectional" : "causal");
    if (max_distance <= p->max_exact)
        RK_FAIL(RK_EINVAL, "t5: max_distance = %zu must exceed max_exact = %zu (half the "
                "buckets of a side)", max_distance, p->max_exact);
    /* Python: math.log(max_distance / max_exact) in double, used as a float32 operand */
    p->lograt = (float)log((double)max_distance / (double)p->max_exact);
    return RK_OK;
}

/* Bucket of distance n >= 0 within one side: exact below max_exact, then logarithmic bins in
 * float32 arithmetic: max_exact + trunc(log(n / max_exact) / lograt * (nb - max_exact)). */
static size_t t5_side_bucket(const t5_params *p, uint64_t n)
{
    if (n < p->max_exact) return (size_t)n;
    float v = logf((float)n / (float)p->max_exact) / p->lograt * (float)(p->side - p->max_exact);
    if (!(v < (float)(p->side - p->max_exact))) return p->side - 1;   /* also v = NaN: never */
    size_t b = p->max_exact + (size_t)v;                               /* v >= 0: truncation */
    return b < p->side - 1 ? b : p->side - 1;
}

static size_t t5_bucket_of(const t5_params *p, int64_t t)
{
    size_t base = 0;
    uint64_t n;
    if (p->bidir) {
        if (t > 0) base = p->side;
        n = t < 0 ? (uint64_t)0 - (uint64_t)t : (uint64_t)t;
    } else {
        n = t < 0 ? (uint64_t)0 - (uint64_t)t : 0;     /* -min(t, 0) */
    }
    return base + t5_side_bucket(p, n);
}

int rk_t5_bucket(int64_t t, int bidirectional, size_t num_buckets, size_t max_distance,
                 size_t *bucket)
{
    rk__clear_error();
    if (!bucket) RK_FAIL(RK_EINVAL, "t5: bucket is NULL");
    t5_params p;
    int rc = t5_setup(bidirectional, num_buckets, max_distance, &p);
    if (rc) return rc;
    *bucket = t5_bucket_of(&p, t);
    return RK_OK;
}

int rk_bias_t5(double *bias, size_t n_q, size_t n_kv, const double *table, int bidirectional,
               size_t num_buckets, size_t max_distance)
{
    rk__clear_error();
    if (!bias) RK_FAIL(RK_EINVAL, "t5: bias is NULL");
    t5_params p;
    int rc = t5_setup(bidirectional, num_buckets, max_distance, &p);
    if (rc) return rc;
    size_t len = rk_bias_len(n_q, n_kv), nbk = p.bidir ? 2 * p.side : p.side;
    if (len == 0) RK_FAIL(RK_EDIM, "t5: n_q = %zu, n_kv = %zu: both must be > 0", n_q, n_kv);
    if (table)
        for (size_t b = 0; b < nbk; b++)
            if (isnan(table[b]) || table[b] == INFINITY)
                RK_FAIL(RK_ENONFINITE, "t5: table[%zu] = %g; entries must be finite or -inf", b,
                        table[b]);
    size_t last_k = (size_t)-1;
    uint64_t last_r = 0;
    for (size_t idx = 0; idx < len; idx++) {
        size_t b = t5_bucket_of(&p, (int64_t)offset_of(idx, n_kv));
        if (table) {
            bias[idx] = table[b];
        } else {
            /* stand-in table: -ln(1 + r), r the smallest distance of side bucket k = b mod side:
             * k itself below max_exact; else the first n whose bucket reaches k (found by
             * n <= max_distance: the last bucket is reached there at the latest; a bucket no
             * integer n falls in gets the distance of the next one) */
            size_t k = b % p.side;
            if (k != last_k) {                  /* consecutive offsets share buckets */
                last_r = k;
                if (k >= p.max_exact) {
                    last_r = p.max_exact;
                    while (t5_side_bucket(&p, last_r) < k) last_r++;
                }
                last_k = k;
            }
            bias[idx] = -log1p((double)last_r);
        }
    }
    return RK_OK;
}

/* ------------------------------------------------------------------------------------ */
/* ALiBi                                                                                */
/* ------------------------------------------------------------------------------------ */

int rk_alibi_slopes(double *slopes, size_t n_heads)
{
    rk__clear_error();
    if (!slopes) RK_FAIL(RK_EINVAL, "alibi: slopes is NULL");
    if (n_heads == 0) RK_FAIL(RK_EINVAL, "alibi: n_heads must be > 0");
    size_t p = 1;
    while (p * 2 <= n_heads) p *= 2;                 /* largest power of two <= n_heads */
    /* 2^(-8 (h + 1) / p): exact powers of two where 8 (h+1) / p is an integer */
    for (size_t h = 0; h < p; h++) slopes[h] = exp2(-8.0 * (double)(h + 1) / (double)p);
    /* the rest: slopes 0, 2, 4, .. of 2p heads, 2^(-8 (2k + 1) / (2p)) */
    for (size_t k = 0; k < n_heads - p; k++)
        slopes[p + k] = exp2(-8.0 * (double)(2 * k + 1) / (double)(2 * p));
    return RK_OK;
}

int rk_bias_alibi(double *bias, size_t n_q, size_t n_kv, double slope)
{
    rk__clear_error();
    if (!bias) RK_FAIL(RK_EINVAL, "alibi: bias is NULL");
    if (!isfinite(slope) || slope < 0.0)
        RK_FAIL(RK_EINVAL, "alibi: slope = %g must be finite and >= 0", slope);
    size_t len = rk_bias_len(n_q, n_kv);
    if (len == 0) RK_FAIL(RK_EDIM, "alibi: n_q = %zu, n_kv = %zu: both must be > 0", n_q, n_kv);
    for (size_t idx = 0; idx < len; idx++) {
        long long t = offset_of(idx, n_kv);
        bias[idx] = t == 0 ? 0.0 : -slope * (double)(t < 0 ? -t : t);
    }
    return RK_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Sinusoidal absolute encoding                                                         */
/* ------------------------------------------------------------------------------------ */

static int sin_base(double *base)
{
    if (*base == 0.0) *base = 10000.0;
    if (!isfinite(*base) || *base <= 0.0 || *base == 1.0)
        RK_FAIL(RK_EINVAL, "sinusoidal: base = %g must be finite, > 0 and != 1", *base);
    return RK_OK;
}

/* p[c] of position pos in width d: sin (c even) or cos (c odd) of pos * base^(-2k/d), k = c/2 */
static double sin_pe(double pos, size_t c, size_t d, double base)
{
    double a = pos * pow(base, -2.0 * (double)(c / 2) / (double)d);
    return c % 2 ? cos(a) : sin(a);
}

int rk_sinusoidal_add(rk_mat *x, int64_t pos0, double base)
{
    rk__clear_error();
    if (!x) RK_FAIL(RK_EINVAL, "sinusoidal: x is NULL");
    int rc = sin_base(&base);
    if (!rc) rc = rk__check_view("x", x->data, x->rows, x->cols, x->ld, x->rows, x->cols);
    if (rc) return rc;
    for (size_t r = 0; r < x->rows; r++) {
        float *x_r = x->data + r * x->ld;
        double pos = (double)pos0 + (double)r;
        for (size_t c = 0; c < x->cols; c++)
            x_r[c] = (float)((double)x_r[c] + sin_pe(pos, c, x->cols, base));
    }
    return RK_OK;
}

int rk_sinusoidal_add_d(rk_matd *x, int64_t pos0, double base)
{
    rk__clear_error();
    if (!x) RK_FAIL(RK_EINVAL, "sinusoidal: x is NULL");
    int rc = sin_base(&base);
    if (!rc) rc = rk__check_view("x", x->data, x->rows, x->cols, x->ld, x->rows, x->cols);
    if (rc) return rc;
    for (size_t r = 0; r < x->rows; r++) {
        double *x_r = x->data + r * x->ld;
        double pos = (double)pos0 + (double)r;
        for (size_t c = 0; c < x->cols; c++) x_r[c] += sin_pe(pos, c, x->cols, base);
    }
    return RK_OK;
}

/* ------------------------------------------------------------------------------------ */
/* xPos                                                                                 */
/* ------------------------------------------------------------------------------------ */

int rk_xpos_zeta(double *zeta, size_t r, double gamma)
{
    rk__clear_error();
    if (!zeta) RK_FAIL(RK_EINVAL, "xpos: zeta is NULL");
    if (gamma == 0.0) gamma = 0.4;
    if (r == 0 || r % 2) RK_FAIL(RK_EDIM, "xpos: the rotated width r = %zu must be even and > 0", r);
    if (!isfinite(gamma) || gamma < 0.0)
        RK_FAIL(RK_EINVAL, "xpos: gamma = %g must be finite and > 0", gamma);
    for (size_t i = 0; i < r / 2; i++)
        zeta[i] = (2.0 * (double)i / (double)r + gamma) / (1.0 + gamma);
    return RK_OK;
}
