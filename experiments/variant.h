/* Attention variants by name: the one table that maps a name ("softmax", "performer-rope-qk",
 * "linear-elu", ...) to an rk_attn_config. `ropekit attend`, `ropekit scaling` and
 * `ropekit approx` all build their plans through variant_config, so one name means the same
 * settings everywhere (and in the TSV tables the experiments write).
 *
 *   rk_attn_config ac;
 *   if (variant_config("performer-rope-features", n, n, 64, 64, 1, 256, 1, &ac)) ...unknown...
 *   rk_attn_create(&plan, &ac);
 *
 * Settings shared by every FAVOR+ row: positive features, orthogonal blocks with chi(d) row
 * norms (the paper's defaults); a caller may change kernel / proj / proj_norm afterwards
 * (`ropekit approx` does). RoPE rows use the library's RoPE defaults (interleaved, base
 * 10000, theta over the rotated width).
 *
 * Relative-bias rows (issue 6): "rpe-fft" (Luo et al. 2021: FAVOR+ features with the same
 * defaults, the Toeplitz sums by FFT), "rpe-fft-linear" (elu(x)+1 features, F = d) and the
 * exact "softmax-t5" carry a T5 relative bias: rk_bias_t5's stand-in table (-ln(1 + distance)
 * per bucket; 32 buckets, max distance 128; bidirectional = !causal). A bias makes the timing
 * representative (every offset has its own weight, as with a trained table; rpe-fft's cost does
 * not depend on the values) and makes rpe-fft and softmax-t5 the same model (FAVOR+ estimates
 * exp(scale q.k + b)), so softmax-t5 is rpe-fft's reference. The bias values live in a buffer
 * of variant.c (see variant_fill).
 */
#ifndef RK_VARIANT_H
#define RK_VARIANT_H

#include <stddef.h>

#include "ropekit.h"

/* Row flags. */
enum {
    VARIANT_SCALING = 1,   /* in `ropekit scaling`'s default set                            */
    VARIANT_APPROX  = 2,   /* an approximation `ropekit approx` measures by default         */
};

/* The relative bias a row carries (cfg.bias). */
typedef enum {
    VARIANT_BIAS_NONE = 0,
    VARIANT_BIAS_T5,           /* rk_bias_t5(NULL table, bidirectional = !causal, defaults)    */
} variant_bias;

typedef struct variant {
    const char  *name;
    const char  *summary;      /* one line, for --help and logs                               */
    rk_kind      kind;
    rk_rope_mode rope;
    rk_map       map;          /* RK_LINEAR rows, and RK_RPE_FFT rows with a linear base       */
    const char  *reference;    /* the exact variant this one approximates (NULL: exact)       */
    double       exponent;     /* expected growth of time with length: 2 quadratic, 1 linear  */
    /* Floating-point operations of one execute (the usual 2 per multiply-add; exp, max and
     * the like not counted), for GFLOP/s, of a resolved config (rk_attn_resolve: the feature
     * width and FFT length are the library's). */
    double     (*flops)(const rk_attn_config *c, const rk_attn_info *info);
    /* Extra settings of kinds with fields of their own (NULL: none); 0 or an rk status. */
    int        (*setup)(rk_attn_config *c);
    unsigned     flags;
    rk_kind      base;         /* RK_RPE_FFT rows: the feature map, RK_PERFORMER or RK_LINEAR  */
    variant_bias bias;
} variant;

/* Default seed of FAVOR+ plans when the user gives none (documented in --help). */
#define VARIANT_DEFAULT_SEED 1UL

size_t         variant_count(void);
const variant *variant_at(size_t i);
const variant *variant_find(const char *name);          /* NULL if unknown */
/* "softmax, softmax-rope, ..." into buf (truncated to len); returns buf. */
const char    *variant_names(char *buf, size_t len);

/* Fill *out for the named variant: sizes, causal flag, m features (FAVOR+; ignored by rows
 * without a random projection; 0 = library default) and seed (FAVOR+; 0 means
 * VARIANT_DEFAULT_SEED). Everything else 0 (library defaults). Returns 0, or -1 if the
 * name is unknown, or an rk status (the bias could not be made).
 * A row with a bias: out->bias points to a buffer owned by variant.c, valid until the next
 * variant_fill / variant_config call or variant_release (rk_attn_create copies it, so create
 * the plan before filling another config); with n_q or n_kv 0 there is no bias (NULL). */
int variant_config(const char *name, size_t n_q, size_t n_kv, size_t d, size_t d_v, int causal,
                   size_t m, unsigned long seed, rk_attn_config *out);
/* The same from a row. */
int variant_fill(const variant *v, size_t n_q, size_t n_kv, size_t d, size_t d_v, int causal,
                 size_t m, unsigned long seed, rk_attn_config *out);

/* Free the bias buffer of variant_fill (a later fill makes a new one). */
void variant_release(void);

/* The row draws a random projection (its kind reads RK_FIELD_PROJ: performer rows, rpe-fft with
 * the FAVOR+ base), so its m and seed matter. */
int variant_random(const variant *v);

/* Visible (query, key) pairs of a plan: n_q * n_kv, or fewer when causal (bottom-right). */
double variant_pairs(const rk_attn_config *c);

#endif
