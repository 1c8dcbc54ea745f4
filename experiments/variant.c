/* The variant table (see variant.h). */
#include "variant.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double variant_pairs(const rk_attn_config *c)
{
    double nq = (double)c->n_q, nkv = (double)c->n_kv;
    if (!c->causal) return nq * nkv;
    /* query i sees the keys j <= i + (n_kv - n_q), at most n_kv of them */
    if (nkv >= nq) return nq * (nkv - nq) + nq * (nq + 1.0) / 2.0;
    return nkv * (nkv + 1.0) / 2.0;   /* the first n_q - n_kv queries see none */
}

/* Exact attention: scores q.k and the weighted sum of v over the visible pairs; RoPE qk adds
 * 3 flops per element of q and k. */
static double flops_softmax(const rk_attn_config *c, const rk_attn_info *info)
{
    (void)info;
    double f = variant_pairs(c) * 2.0 * ((double)c->d + (double)c->d_v);
    if (c->rope == RK_ROPE_QK) f += 3.0 * (double)(c->n_q + c->n_kv) * (double)c->d;
    if (c->bias) f += variant_pairs(c);   /* one add per visible logit */
    return f;
}

/* Kernelised attention with F features: projections x W^T (FAVOR+ only, 2 m d per row),
 * the key state sum phi(k) [v 1]^T (2 F (d_v + 1) per key) and the query side
 * phi(q)^T [S z] (2 F (d_v + 1) per query); causal prefix sums cost the same. RoPE on the
 * features or on q, k adds 3 flops per rotated element. */
static double flops_kernel(const rk_attn_config *c, const rk_attn_info *info)
{
    double F = (double)info->feature_dim, d = (double)c->d, dv = (double)c->d_v;
    double n = (double)(c->n_q + c->n_kv);
    double f = 2.0 * F * (dv + 1.0) * n;
    if (c->kind == RK_PERFORMER) f += 2.0 * (double)c->n_features * d * n;
    if (c->rope == RK_ROPE_FEATURES) f += 3.0 * F * n;
    if (c->rope == RK_ROPE_QK) f += 3.0 * d * n;
    return f;
}

/* RK_RPE_FFT (lib/rpe_fft.c): F (d_v + 1) columns, each an r2c and a c2r transform of length
 * N (5 N log2 N flops for the pair, the usual FFT count), the product with the bias spectrum
 * (N/2 + 1 complex multiplies: ~3N) and the accumulation phi_f(q_i) y_i (2 n_q); plus the
 * projections x W^T of the FAVOR+ base (2 m d per row of q and k). */
static double flops_rpe(const rk_attn_config *c, const rk_attn_info *info)
{
    double F = (double)info->feature_dim, N = (double)info->fft_len;
    double dv = (double)c->d_v, nq = (double)c->n_q;
    double f = F * (dv + 1.0) * (5.0 * N * log2(N) + 3.0 * N + 2.0 * nq);
    if (c->rpe_base != RK_LINEAR)
        f += 2.0 * (double)(c->n_q + c->n_kv) * (double)c->n_features * (double)c->d;
    return f;
}

/* RK_UNIFORM: the running sum of the visible values (one add per key and channel) and one
 * division per output element. */
static double flops_uniform(const rk_attn_config *c, const rk_attn_info *info)
{
    (void)info;
    return ((double)c->n_kv + (double)c->n_q) * (double)c->d_v;
}

/* The bias of VARIANT_BIAS_T5 rows, in a buffer reused by every fill (see variant.h). */
static double *bias_buf;
static size_t bias_cap;

void variant_release(void)
{
    free(bias_buf);
    bias_buf = NULL;
    bias_cap = 0;
}

static int make_bias(variant_bias kind, rk_attn_config *c)
{
    size_t L = rk_bias_len(c->n_q, c->n_kv);
    if (kind == VARIANT_BIAS_NONE || L == 0) return RK_OK;
    if (L > bias_cap) {
        double *p = L <= SIZE_MAX / sizeof *p ? realloc(bias_buf, L * sizeof *p) : NULL;
        if (!p) return RK_ENOMEM;
        bias_buf = p;
        bias_cap = L;
    }
    int rc = rk_bias_t5(bias_buf, c->n_q, c->n_kv, NULL, !c->causal, 0, 0);
    if (rc) return rc;
    c->bias = bias_buf;
    c->bias_len = L;
    return RK_OK;
}

#define EXACT(name, rope, summary) \
    { name, summary, RK_SOFTMAX, rope, RK_MAP_ELU, NULL, 2.0, flops_softmax, NULL, \
      VARIANT_SCALING, RK_SOFTMAX, VARIANT_BIAS_NONE }
#define FAVOR(name, rope, ref, summary) \
    { name, summary, RK_PERFORMER, rope, RK_MAP_ELU, ref, 1.0, flops_kernel, NULL, \
      VARIANT_SCALING | VARIANT_APPROX, RK_PERFORMER, VARIANT_BIAS_NONE }
#define LINEAR(name, map, rope, flags, summary) \
    { name, summary, RK_LINEAR, rope, map, NULL, 1.0, flops_kernel, NULL, flags, RK_LINEAR, \
      VARIANT_BIAS_NONE }
#define RPE(name, base, ref, flags, summary) \
    { name, summary, RK_RPE_FFT, RK_ROPE_NONE, RK_MAP_ELU, ref, 1.0, flops_rpe, NULL, flags, \
      base, VARIANT_BIAS_T5 }

static const variant table[] = {
    EXACT("softmax", RK_ROPE_NONE, "exact softmax attention (eq. 2)"),
    EXACT("softmax-rope", RK_ROPE_QK, "exact softmax attention, RoPE on q and k (eq. 16)"),
    FAVOR("performer", RK_ROPE_NONE, "softmax",
          "FAVOR+ (positive orthogonal random features)"),
    FAVOR("performer-rope-features", RK_ROPE_FEATURES, "softmax-rope",
          "FAVOR+, RoPE on the features, numerator only (eq. 19)"),
    FAVOR("performer-rope-qk", RK_ROPE_QK, "softmax-rope",
          "FAVOR+, RoPE on q and k before the feature map (performer-pytorch)"),
    LINEAR("linear-elu", RK_MAP_ELU, RK_ROPE_NONE, VARIANT_SCALING,
           "linear attention, elu(x)+1 features (Katharopoulos et al.)"),
    LINEAR("linear-elu-rope-features", RK_MAP_ELU, RK_ROPE_FEATURES, VARIANT_SCALING,
           "linear attention elu+1, RoPE on the features, numerator only (eq. 19)"),
    LINEAR("linear-elu-rope-qk", RK_MAP_ELU, RK_ROPE_QK, 0,
           "linear attention elu+1, RoPE on q and k before the map"),
    LINEAR("linear-relu", RK_MAP_RELU, RK_ROPE_NONE, 0, "linear attention, relu features"),
    LINEAR("linear-relu-rope-features", RK_MAP_RELU, RK_ROPE_FEATURES, 0,
           "linear attention relu, RoPE on the features, numerator only"),
    { "softmax-t5", "exact softmax attention with a T5 relative bias (stand-in table)",
      RK_SOFTMAX, RK_ROPE_NONE, RK_MAP_ELU, NULL, 2.0, flops_softmax, NULL, 0, RK_SOFTMAX,
      VARIANT_BIAS_T5 },
    /* FFT rows: expected exponent 1, though the cost is N log N: the log alone gives a fitted
     * ~1.1 over n = 1024..16384, and columns leaving the cache more (one run, m = 64, 1 thread,
     * causal: 1.26, GFLOP/s of flops_rpe falling from 12 to 7.9). softmax-t5 is not in the
     * default scaling set (one more quadratic row); without it rpe-fft is compared with softmax. */
    RPE("rpe-fft", RK_PERFORMER, "softmax-t5", VARIANT_SCALING,
        "FAVOR+ with a T5 relative bias, Toeplitz sums by FFT (Luo et al. 2021)"),
    RPE("rpe-fft-linear", RK_LINEAR, NULL, 0,
        "elu(x)+1 linear attention with a T5 relative bias by FFT (Luo et al.)"),
    { "uniform", "every visible key weighs the same: the mean of the values (a baseline)",
      RK_UNIFORM, RK_ROPE_NONE, RK_MAP_ELU, NULL, 1.0, flops_uniform, NULL, 0, RK_UNIFORM,
      VARIANT_BIAS_NONE },
};
#define NTABLE (sizeof table / sizeof table[0])

size_t variant_count(void) { return NTABLE; }
const variant *variant_at(size_t i) { return i < NTABLE ? &table[i] : NULL; }

const variant *variant_find(const char *name)
{
    for (size_t i = 0; i < NTABLE; i++)
        if (strcmp(table[i].name, name) == 0) return &table[i];
    return NULL;
}

const char *variant_names(char *buf, size_t len)
{
    if (!len) return buf;
    buf[0] = '\0';
    for (size_t i = 0, n = 0; i < NTABLE && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? ", " : "", table[i].name);
    return buf;
}

int variant_fill(const variant *v, size_t n_q, size_t n_kv, size_t d, size_t d_v, int causal,
                 size_t m, unsigned long seed, rk_attn_config *out)
{
    memset(out, 0, sizeof *out);
    out->kind = v->kind;
    out->n_q = n_q;
    out->n_kv = n_kv;
    out->d = d;
    out->d_v = d_v;
    out->causal = causal != 0;
    out->rope = v->rope;
    out->map = v->map;
    if (v->kind == RK_RPE_FFT) out->rpe_base = v->base;
    if (variant_random(v)) {    /* the paper's FAVOR+ settings */
        out->kernel = RK_KERNEL_POSITIVE;
        out->proj = RK_PROJ_ORTHOGONAL;
        out->proj_norm = RK_NORM_CHI;
        out->n_features = m;
        out->seed = seed ? seed : VARIANT_DEFAULT_SEED;
    }
    int rc = make_bias(v->bias, out);
    if (rc) return rc;
    return v->setup ? v->setup(out) : 0;
}

int variant_random(const variant *v)
{
    rk_attn_config c = { .kind = v->kind, .rpe_base = v->kind == RK_RPE_FFT ? v->base : 0 };
    return (rk_attn_fields(&c) & RK_FIELD_PROJ) != 0;
}

int variant_config(const char *name, size_t n_q, size_t n_kv, size_t d, size_t d_v, int causal,
                   size_t m, unsigned long seed, rk_attn_config *out)
{
    const variant *v = variant_find(name);
    if (!v) return -1;
    return variant_fill(v, n_q, n_kv, d, d_v, causal, m, seed, out);
}
