/* The variant table (see variant.h). */
#include "variant.h"

#include <stdio.h>
#include <string.h>

double variant_pairs(const rk_attn_config *c)
{
    double nq = (double)c->n_q, nkv = (double)c->n_kv;
    if (!c->causal) return nq * nkv;
    /* query i sees the keys j <= i + (n_kv - n_q), at most n_kv of them */
    if (nkv >= nq) return nq * (nkv - nq) + nq * (nq + 1.0) / 2.0;
    return nkv * (nkv + 1.0) / 2.0;   /* the first n_q - n_kv queries see none */
}

size_t variant_feature_dim(const rk_attn_config *c)
{
    switch (c->kind) {
    case RK_PERFORMER: return c->kernel == RK_KERNEL_POSITIVE ? c->n_features : 2 * c->n_features;
    case RK_LINEAR:    return c->d;
    default:           return 0;
    }
}

/* Exact attention: scores q.k and the weighted sum of v over the visible pairs; RoPE qk adds
 * 3 flops per element of q and k. */
static double flops_softmax(const rk_attn_config *c)
{
    double f = variant_pairs(c) * 2.0 * ((double)c->d + (double)c->d_v);
    if (c->rope == RK_ROPE_QK) f += 3.0 * (double)(c->n_q + c->n_kv) * (double)c->d;
    return f;
}

/* Kernelised attention with F features: projections x W^T (FAVOR+ only, 2 m d per row),
 * the key state sum phi(k) [v 1]^T (2 F (d_v + 1) per key) and the query side
 * phi(q)^T [S z] (2 F (d_v + 1) per query); causal prefix sums cost the same. RoPE on the
 * features or on q, k adds 3 flops per rotated element. */
static double flops_kernel(const rk_attn_config *c)
{
    double F = (double)variant_feature_dim(c), d = (double)c->d, dv = (double)c->d_v;
    double n = (double)(c->n_q + c->n_kv);
    double f = 2.0 * F * (dv + 1.0) * n;
    if (c->kind == RK_PERFORMER) f += 2.0 * (double)c->n_features * d * n;
    if (c->rope == RK_ROPE_FEATURES) f += 3.0 * F * n;
    if (c->rope == RK_ROPE_QK) f += 3.0 * d * n;
    return f;
}

#define EXACT(name, rope, summary) \
    { name, summary, RK_SOFTMAX, rope, RK_MAP_ELU, NULL, 2.0, flops_softmax, NULL, VARIANT_SCALING }
#define FAVOR(name, rope, ref, summary) \
    { name, summary, RK_PERFORMER, rope, RK_MAP_ELU, ref, 1.0, flops_kernel, NULL, \
      VARIANT_SCALING | VARIANT_APPROX }
#define LINEAR(name, map, rope, flags, summary) \
    { name, summary, RK_LINEAR, rope, map, NULL, 1.0, flops_kernel, NULL, flags }

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
    if (v->kind == RK_PERFORMER) {
        out->kernel = RK_KERNEL_POSITIVE;
        out->proj = RK_PROJ_ORTHOGONAL;
        out->proj_norm = RK_NORM_CHI;
        out->n_features = m;
        out->seed = seed ? seed : VARIANT_DEFAULT_SEED;
    }
    return v->setup ? v->setup(out) : 0;
}

int variant_config(const char *name, size_t n_q, size_t n_kv, size_t d, size_t d_v, int causal,
                   size_t m, unsigned long seed, rk_attn_config *out)
{
    const variant *v = variant_find(name);
    if (!v) return -1;
    return variant_fill(v, n_q, n_kv, d, d_v, causal, m, seed, out);
}
