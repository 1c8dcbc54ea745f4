/* RoPE: rotary position embedding (RoFormer eq. 13-15, 34) with partial rotary, two pairing
 * layouts and every frequency scheme of ropekit.h (docs/theory.md#rope-scalings-and-xpos; Hugging Face
 * transformers' modeling_rope_utils.py rope types: default, linear, dynamic, yarn, longrope,
 * llama3; static NTK; the YaRN paper's own ramp; explicit per-pair frequencies or divisors).
 *
 * Every scheme is data: rope_freqs turns the config into r/2 frequencies theta_i and
 * rope_resolve into one attention factor, once, at create. Nothing below rope_freqs knows
 * which scheme made them.
 *
 * A plan holds the resolved config, the r/2 frequencies (double) and cos/sin tables for
 * positions [0, table_len), in double and in float (each row: r/2 cos, then r/2 sin, already
 * multiplied by the attention factor). A position p outside the table is split as
 * |p| = a T + b (T = table_len, 0 <= b < T; p < 0 is the mirror of |p|): cos/sin of the angle
 * (a T) theta_i are computed directly in double once per run of rows sharing a, combined with
 * the double table entry of b by the angle-addition formula in double, corrected for the
 * difference between the angle roundings (fl(p th) - fl(aT th) - fl(b th)), then rounded to
 * float for the float path. The result is within ~5 double ulps of 1 of the direct formula
 * m cos/sin(fl(p theta_i)) at any position up to ~2^26 / theta (see combine_d), at the cost of
 * ~15 double flops per pair instead of a cos and a sin.
 *
 * Apply is a streaming kernel: one pass over the data, the row's cos/sin loaded (or combined)
 * once and reused by every head of the row, no allocation, OpenMP over contiguous row ranges
 * for large inputs (each thread computes its own cos/sin of a T theta). Every row's cos/sin
 * are a function of its position alone, so pos0 + t and an explicit array give the same bits
 * and the row partition (thread count) never changes them. The float path
 * has AVX2 and AVX-512 kernels chosen at create (the plan's isa); they use the same operations
 * in the same order as the portable loops (no FMA), so all give the same bits and results
 * never depend on the thread count or on the machine's SIMD width.
 */
#include "rk_internal.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#  define RK_ROPE_X86 1
#  include <immintrin.h>
#else
#  define RK_ROPE_X86 0
#endif

/* Below this many elements (rows * cols) an OpenMP region costs more than it saves. */
#define RK_ROPE_PAR_MIN 32768
/* Pairs per stack chunk on the out-of-table path. */
#define RK_ROPE_CHUNK 64

struct rk_rope {
    rk_rope_config cfg;      /* defaults resolved; its arrays point into `arrays`            */
    size_t  half;            /* r/2 pairs per head                                            */
    double  mscale;          /* cos/sin multiplier (attention factor)                         */
    double *theta;           /* (half) final frequencies                                      */
    double *arrays;          /* copies of the config's per-pair arrays (NULL without any)     */
    size_t  narrays;         /* how many (each half values)                                   */
    /* (table_len, 2*half) rows [cos | sin]; [0] forward (times mscale), [1] inverse (divided
     * by mscale; the sign of sin is flipped by the kernels). [1] aliases [0] when mscale == 1. */
    double *tab_d[2];
    float  *tab_f[2];
    rk_isa  isa;             /* float kernels' path (portable, AVX2, AVX-512: the same bits)  */
};

/* ---------------------------------------------------------------------------------------- */
/* Creation                                                                                 */
/* ---------------------------------------------------------------------------------------- */

const char *rk_rope_scaling_name(rk_rope_scaling s)
{
    switch (s) {
    case RK_SCALE_NONE:       return "none";
    case RK_SCALE_LINEAR:     return "linear";
    case RK_SCALE_NTK:        return "ntk";
    case RK_SCALE_YARN:       return "yarn";
    case RK_SCALE_YARN_PAPER: return "yarn-paper";
    case RK_SCALE_DYNAMIC:    return "dynamic";
    case RK_SCALE_LLAMA3:     return "llama3";
    case RK_SCALE_LONGROPE:   return "longrope";
    }
    return "?";
}

/* HF's get_mscale (inside _compute_yarn_parameters): 1 for s <= 1, else 0.1 k ln s + 1. */
static double get_mscale(double s, double k)
{
    return s <= 1.0 ? 1.0 : 0.1 * k * log(s) + 1.0;
}

/* A scalar field that may be 0 (default) or must be finite and >= 0. */
static int check_nonneg(const char *name, double v)
{
    if (!isfinite(v) || v < 0.0)
        RK_FAIL(RK_EINVAL, "rope: %s = %g must be finite and >= 0 (0: default)", name, v);
    return RK_OK;
}

/* n values of a per-pair array: finite and > 0 (or >= 0 with zero_ok). */
static int check_array(const char *name, const double *a, size_t n, int zero_ok)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(a[i]) || a[i] < 0.0 || (a[i] == 0.0 && !zero_ok))
            RK_FAIL(RK_EINVAL, "rope: %s[%zu] = %g must be finite and %s 0", name, i, a[i],
                    zero_ok ? ">=" : ">");
    return RK_OK;
}

/* The per-pair arrays of a config: which are set must fit the scaling. */
static int rope_check_arrays(const rk_rope_config *c, size_t h)
{
    int lr = c->scaling == RK_SCALE_LONGROPE;
    if (lr && (!c->short_factor || !c->long_factor))
        RK_FAIL(RK_EINVAL, "rope: longrope needs short_factor and long_factor (%zu values each)",
                h);
    if (!lr && (c->short_factor || c->long_factor))
        RK_FAIL(RK_EINVAL, "rope: short_factor / long_factor are longrope's; scaling is %s",
                rk_rope_scaling_name(c->scaling));
    if (lr && c->freq_factors)
        RK_FAIL(RK_EINVAL, "rope: longrope's factors are its per-pair divisors: freq_factors "
                "cannot be given as well");
    if (c->freqs && (c->scaling != RK_SCALE_NONE || c->freq_factors))
        RK_FAIL(RK_EINVAL, "rope: freqs gives the frequencies as they are: it takes no scaling "
                "(got %s) and no freq_factors", rk_rope_scaling_name(c->scaling));
    int rc = RK_OK;
    if (!rc && c->short_factor) rc = check_array("short_factor", c->short_factor, h, 0);
    if (!rc && c->long_factor) rc = check_array("long_factor", c->long_factor, h, 0);
    if (!rc && c->freq_factors) rc = check_array("freq_factors", c->freq_factors, h, 0);
    if (!rc && c->freqs) rc = check_array("freqs", c->freqs, h, 1);
    return rc;
}

/* Validate cfg and fill in defaults. Codes: RK_EINVAL for bad values, RK_EDIM for pair sizes. */
static int rope_resolve(rk_rope_config *c)
{
    if (c->dim == 0) RK_FAIL(RK_EINVAL, "rope: dim = 0, must be > 0");
    if (c->rotary_dim == 0) c->rotary_dim = c->dim;
    if (c->rotary_dim > c->dim)
        RK_FAIL(RK_EDIM, "rope: rotary_dim = %zu exceeds dim = %zu", c->rotary_dim, c->dim);
    if (c->rotary_dim % 2)
        RK_FAIL(RK_EDIM, "rope: rotary_dim = %zu is odd, pairs are needed", c->rotary_dim);
    if (c->style != RK_ROPE_INTERLEAVED && c->style != RK_ROPE_HALF)
        RK_FAIL(RK_EINVAL, "rope: unknown style %d", (int)c->style);
    if (c->base == 0.0) c->base = 10000.0;
    if (!isfinite(c->base) || !(c->base > 0.0) || c->base == 1.0)
        RK_FAIL(RK_EINVAL, "rope: base = %g must be finite, > 0 and != 1", c->base);
    if ((int)c->scaling < (int)RK_SCALE_NONE || (int)c->scaling > (int)RK_SCALE_LONGROPE)
        RK_FAIL(RK_EINVAL, "rope: unknown scaling %d", (int)c->scaling);
    rk_rope_scaling sc = c->scaling;
    const char *name = rk_rope_scaling_name(sc);
    int rc = rope_check_arrays(c, c->rotary_dim / 2);
    if (!rc) rc = check_nonneg("orig_ctx", c->orig_ctx);
    if (!rc) rc = check_nonneg("max_pos", c->max_pos);
    if (!rc) rc = check_nonneg("low_freq_factor", c->low_freq_factor);
    if (!rc) rc = check_nonneg("high_freq_factor", c->high_freq_factor);
    if (rc) return rc;
    if (!isfinite(c->mscale) || !isfinite(c->mscale_all_dim))
        RK_FAIL(RK_EINVAL, "rope: mscale = %g, mscale_all_dim = %g must be finite", c->mscale,
                c->mscale_all_dim);
    if (c->no_truncate != 0 && c->no_truncate != 1)
        RK_FAIL(RK_EINVAL, "rope: no_truncate = %d must be 0 or 1", c->no_truncate);

    /* Lengths: L = orig_ctx (HF's standardize_rope_params defaults it to M), M = max_pos. */
    double given_max = c->max_pos;
    if (c->orig_ctx == 0.0) c->orig_ctx = given_max > 0.0 ? given_max : 4096.0;
    if (c->max_pos == 0.0) c->max_pos = c->orig_ctx;

    if (sc == RK_SCALE_NONE) {
        c->factor = 1.0;                 /* ignored without a scaling */
    } else {
        /* yarn, longrope: factor absent -> max_position_embeddings / original (HF) */
        if (c->factor == 0.0 && (sc == RK_SCALE_YARN || sc == RK_SCALE_LONGROPE) &&
            given_max > 0.0)
            c->factor = given_max / c->orig_ctx;
        if (!isfinite(c->factor) || !(c->factor > 0.0))
            RK_FAIL(RK_EINVAL, "rope: factor = %g must be finite and > 0 with %s scaling%s",
                    c->factor, name, sc == RK_SCALE_YARN || sc == RK_SCALE_LONGROPE
                    ? " (or 0 with max_pos > 0: factor = max_pos / orig_ctx)" : "");
    }
    if ((sc == RK_SCALE_NTK || sc == RK_SCALE_DYNAMIC) && c->rotary_dim == 2)
        RK_FAIL(RK_EINVAL, "rope: %s scaling needs rotary_dim > 2 (base * k^(r/(r-2))), got 2",
                sc == RK_SCALE_NTK ? "NTK" : "dynamic NTK");
    if (c->beta_fast == 0.0) c->beta_fast = 32.0;
    if (c->beta_slow == 0.0) c->beta_slow = 1.0;
    if (sc == RK_SCALE_YARN || sc == RK_SCALE_YARN_PAPER) {
        if (!isfinite(c->beta_fast) || !isfinite(c->beta_slow) || !(c->beta_slow > 0.0) ||
            !(c->beta_fast > c->beta_slow))
            RK_FAIL(RK_EINVAL, "rope: %s needs beta_fast > beta_slow > 0, got %g and %g", name,
                    c->beta_fast, c->beta_slow);
    }
    if (sc == RK_SCALE_LLAMA3) {
        if (c->low_freq_factor == 0.0) c->low_freq_factor = 1.0;
        if (c->high_freq_factor == 0.0) c->high_freq_factor = 4.0;
        if (!(c->high_freq_factor > c->low_freq_factor))
            RK_FAIL(RK_EINVAL, "rope: llama3 needs high_freq_factor > low_freq_factor > 0, got "
                    "%g and %g", c->high_freq_factor, c->low_freq_factor);
    }
    if (sc == RK_SCALE_LONGROPE && !(c->orig_ctx > 1.0))
        RK_FAIL(RK_EINVAL, "rope: longrope needs orig_ctx > 1 (its attention factor divides by "
                "ln orig_ctx), got %g", c->orig_ctx);
    if (c->attn_factor == 0.0) {
        double s = c->factor;
        switch (sc) {
        case RK_SCALE_YARN:
            /* HF _compute_yarn_parameters: mscale / mscale_all_dim when both are set */
            c->attn_factor = c->mscale != 0.0 && c->mscale_all_dim != 0.0
                             ? get_mscale(s, c->mscale) / get_mscale(s, c->mscale_all_dim)
                             : get_mscale(s, 1.0);
            break;
        case RK_SCALE_YARN_PAPER:
            /* YaRN sqrt(1/t) = 0.1 ln s + 1; like HF's get_mscale, 1 for s <= 1 */
            c->attn_factor = s > 1.0 ? 0.1 * log(s) + 1.0 : 1.0;
            break;
        case RK_SCALE_LONGROPE:
            /* HF _compute_longrope_parameters */
            c->attn_factor = s <= 1.0 ? 1.0 : sqrt(1.0 + log(s) / log(c->orig_ctx));
            break;
        default:
            c->attn_factor = 1.0;
        }
    }
    if (!isfinite(c->attn_factor) || !(c->attn_factor > 0.0))
        RK_FAIL(RK_EINVAL, "rope: attn_factor = %g must be finite and > 0", c->attn_factor);
    if (c->table_len == 0) c->table_len = 4096;
    return RK_OK;
}

/* A base b' = b k^(r/(r-2)) (NTK, dynamic) must stay usable. */
static int scaled_base(const rk_rope_config *c, double k, double *out)
{
    size_t r = c->rotary_dim;
    double b = c->base * pow(k, (double)r / (double)(r - 2));
    if (!isfinite(b) || !(b > 0.0) || b == 1.0)
        RK_FAIL(RK_EINVAL, "rope: %s base %g * %g^(%zu/%zu) = %g is not usable",
                rk_rope_scaling_name(c->scaling), c->base, k, r, r - 2, b);
    *out = b;
    return RK_OK;
}

/* HF find_correction_dim: the (fractional) dimension index whose wavelength fits n rotations
 * into L, r ln(L / (n 2 pi)) / (2 ln b). */
static double yarn_corr_dim(double n, double r, double base, double L)
{
    return (r * log(L / (n * 2.0 * RK_PI))) / (2.0 * log(base));
}

/* theta_i = base^(-2i/r) (divided by the per-pair divisor, if any), then the scaling. pow per
 * i, never a running product, so every theta carries one rounding. */
static int rope_freqs(const rk_rope_config *c, double *theta)
{
    size_t r = c->rotary_dim, h = r / 2;
    double s = c->factor, base = c->base;
    if (c->freqs) {
        memcpy(theta, c->freqs, h * sizeof *theta);
        return RK_OK;
    }
    int rc = RK_OK;
    if (c->scaling == RK_SCALE_NTK) {
        /* b' = b s^(r/(r-2)): theta_0 stays 1, theta_{h-1} becomes exactly theta_{h-1}/s. */
        rc = scaled_base(c, s, &base);
    } else if (c->scaling == RK_SCALE_DYNAMIC) {
        /* HF _compute_dynamic_ntk_parameters: l = max(seq_len, M) */
        double M = c->max_pos, l = (double)c->seq_len;
        if (l < M) l = M;
        rc = scaled_base(c, (s * l / M) - (s - 1.0), &base);
    }
    if (rc) return rc;
    /* yarn (HF): the ramp's ends in pair-index units (find_correction_range) */
    double lo = 0.0, hi = 1.0;
    if (c->scaling == RK_SCALE_YARN) {
        lo = yarn_corr_dim(c->beta_fast, (double)r, c->base, c->orig_ctx);
        hi = yarn_corr_dim(c->beta_slow, (double)r, c->base, c->orig_ctx);
        if (!c->no_truncate) { lo = floor(lo); hi = ceil(hi); }
        if (lo < 0.0) lo = 0.0;
        if (hi > (double)(r - 1)) hi = (double)(r - 1);
        if (lo == hi) hi += 0.001;       /* linear_ramp_factor: "prevent singularity" */
    }
    /* per-pair divisors: longrope's factor list for the length, or freq_factors */
    const double *div = c->freq_factors;
    if (c->scaling == RK_SCALE_LONGROPE)
        div = (double)c->seq_len > c->orig_ctx ? c->long_factor : c->short_factor;
    for (size_t i = 0; i < h; i++) {
        double t = pow(base, -2.0 * (double)i / (double)r);
        if (div) t = t / div[i];
        switch (c->scaling) {
        case RK_SCALE_LINEAR:
            t = t / s;
            break;
        case RK_SCALE_YARN: {
            /* HF: ramp g over the pair index; inv_freq_extrapolation_factor e = 1 - g;
             * interpolation * (1 - e) + extrapolation * e */
            double g = ((double)i - lo) / (hi - lo);
            g = g < 0.0 ? 0.0 : g > 1.0 ? 1.0 : g;
            double e = 1.0 - g;
            t = (t / s) * (1.0 - e) + t * e;
            break;
        }
        case RK_SCALE_YARN_PAPER: {
            /* NTK-by-parts, the continuous ramp of the YaRN paper's text: rho_i = L theta_i /
             * (2 pi) rotations within the trained length L. Fast dims (rho_i > beta_fast) keep
             * theta_i, slow ones (rho_i < beta_slow) are interpolated to theta_i / s. */
            double rot = c->orig_ctx * t / (2.0 * RK_PI);
            double g = (rot - c->beta_slow) / (c->beta_fast - c->beta_slow);
            g = g < 0.0 ? 0.0 : g > 1.0 ? 1.0 : g;
            t = (1.0 - g) * (t / s) + g * t;
            break;
        }
        case RK_SCALE_LLAMA3: {
            /* HF _compute_llama3_parameters: by wavelength against L / low, L / high */
            double L = c->orig_ctx, lo_f = c->low_freq_factor, hi_f = c->high_freq_factor;
            double w = 2.0 * RK_PI / t;
            if (w > L / lo_f) {
                t = t / s;
            } else if (!(w < L / hi_f)) {
                double k = (L / w - lo_f) / (hi_f - lo_f);
                t = (1.0 - k) * t / s + k * t;
            }
            break;
        }
        default:
            break;
        }
        if (!isfinite(t))
            RK_FAIL(RK_EINVAL, "rope: theta_%zu = %g is not finite (%s scaling)", i, t,
                    rk_rope_scaling_name(c->scaling));
        theta[i] = t;
    }
    return RK_OK;
}

/* cos/sin of pair i at position p for direction inv: the formula that fills the tables. The
 * angle is formed in double, pos * theta_i, before cos/sin. */
#if defined(__GNUC__)
__attribute__((noinline))   /* one compiled copy: the table bits never depend on inlining */
#endif
static void rope_cs(const rk_rope *r, double p, int inv, size_t i, double *c, double *s)
{
    double a = p * r->theta[i];
    double cv = cos(a), sv = sin(a);
    if (inv) { cv = cv / r->mscale; sv = sv / r->mscale; }
    else     { cv = cv * r->mscale; sv = sv * r->mscale; }
    *c = cv;
    *s = sv;
}

static void rope_fill_tables(rk_rope *r, int inv)
{
    size_t T = r->cfg.table_len, h = r->half;
    double *td = r->tab_d[inv];
    float *tf = r->tab_f[inv];
    #pragma omp parallel for schedule(static) if (T * h > RK_ROPE_PAR_MIN)
    for (size_t p = 0; p < T; p++) {
        double *d_p = td + p * 2 * h;
        float *f_p = tf + p * 2 * h;
        for (size_t i = 0; i < h; i++) {
            rope_cs(r, (double)p, inv, i, &d_p[i], &d_p[h + i]);
            f_p[i] = (float)d_p[i];
            f_p[h + i] = (float)d_p[h + i];
        }
    }
}

void rk_rope_destroy(rk_rope *r)
{
    if (!r) return;
    if (r->tab_d[1] != r->tab_d[0]) rk__free(r->tab_d[1]);
    if (r->tab_f[1] != r->tab_f[0]) rk__free(r->tab_f[1]);
    rk__free(r->tab_d[0]);
    rk__free(r->tab_f[0]);
    rk__free(r->theta);
    rk__free(r->arrays);
    rk__free(r);
}

int rk_rope_resolve(rk_rope_config *cfg)
{
    rk__clear_error();
    if (!cfg) RK_FAIL(RK_EINVAL, "rope: NULL cfg");
    return rope_resolve(cfg);
}

/* Copy the config's per-pair arrays into the plan and point its config at the copies, so the
 * caller's arrays need not outlive create. */
static int rope_copy_arrays(rk_rope *r)
{
    const double **arr[4] = { &r->cfg.short_factor, &r->cfg.long_factor, &r->cfg.freq_factors,
                              &r->cfg.freqs };
    size_t h = r->half, n = 0, bytes;
    for (int k = 0; k < 4; k++) n += *arr[k] != NULL;
    if (n == 0) return RK_OK;
    if (rk__bytes(n * h, sizeof(double), &bytes))
        RK_FAIL(RK_EOVERFLOW, "rope: %zu per-pair arrays of %zu values overflow", n, h);
    r->arrays = rk__alloc(bytes);
    if (!r->arrays) RK_FAIL(RK_ENOMEM, "rope: cannot allocate %zu bytes", bytes);
    r->narrays = n;
    double *p = r->arrays;
    for (int k = 0; k < 4; k++)
        if (*arr[k]) {
            memcpy(p, *arr[k], h * sizeof *p);
            *arr[k] = p;
            p += h;
        }
    return RK_OK;
}

int rk_rope_create(rk_rope **out, const rk_rope_config *cfg)
{
    rk__clear_error();
    if (!out || !cfg) RK_FAIL(RK_EINVAL, "rope: NULL %s", out ? "cfg" : "out");
    *out = NULL;
    rk_rope_config c = *cfg;
    int rc = rope_resolve(&c);
    if (rc) return rc;

    size_t h = c.rotary_dim / 2, n, bd, bf, bt;
    if (rk__mul(c.table_len, 2 * h, &n) || rk__bytes(n, sizeof(double), &bd) ||
        rk__bytes(n, sizeof(float), &bf) || rk__bytes(h, sizeof(double), &bt))
        RK_FAIL(RK_EOVERFLOW, "rope: table of %zu positions x %zu pairs overflows", c.table_len, h);

    rk_rope *r = rk__alloc(sizeof *r);
    if (!r) RK_FAIL(RK_ENOMEM, "rope: cannot allocate the plan");
    r->cfg = c;
    r->half = h;
    r->mscale = c.attn_factor;
    r->theta = rk__alloc(bt);
    if (!r->theta) { rk_rope_destroy(r); RK_FAIL(RK_ENOMEM, "rope: cannot allocate %zu bytes", bt); }
    rc = rope_copy_arrays(r);
    if (!rc) rc = rope_freqs(&r->cfg, r->theta);
    if (rc) { rk_rope_destroy(r); return rc; }

    int ndir = r->mscale != 1.0 ? 2 : 1;
    for (int inv = 0; inv < ndir; inv++) {
        r->tab_d[inv] = rk__alloc(bd);
        r->tab_f[inv] = rk__alloc(bf);
        if (!r->tab_d[inv] || !r->tab_f[inv]) {
            rk_rope_destroy(r);
            RK_FAIL(RK_ENOMEM, "rope: cannot allocate cos/sin tables (%zu + %zu bytes)", bd, bf);
        }
    }
    if (ndir == 1) { r->tab_d[1] = r->tab_d[0]; r->tab_f[1] = r->tab_f[0]; }
    for (int inv = 0; inv < ndir; inv++) rope_fill_tables(r, inv);
    rk_isa isa;
    if ((rc = rk__isa_pick(c.isa, RK_ISA_AVX512, "rope", &isa))) { rk_rope_destroy(r); return rc; }
    r->cfg.isa = isa;
    r->isa = RK_ROPE_X86 ? isa : RK_ISA_PORTABLE;
    *out = r;
    return RK_OK;
}

const rk_rope_config *rk_rope_get_config(const rk_rope *r) { return r ? &r->cfg : NULL; }
const double *rk_rope_freqs(const rk_rope *r) { return r ? r->theta : NULL; }
double rk_rope_mscale(const rk_rope *r) { return r ? r->mscale : NAN; }

/* What rk__alloc really takes for a request of n bytes: at least 1, rounded up to 64. */
static size_t alloc_size(size_t n) { return ((n ? n : 1) + 63) & ~(size_t)63; }

/* The struct, the thetas and the cos/sin tables (double and float), the inverse tables only
 * when they are separate (mscale != 1). The sizes were checked for overflow at create. */
size_t rk_rope_bytes(const rk_rope *r)
{
    if (!r) return 0;
    size_t n = r->cfg.table_len * 2 * r->half;
    size_t tables = alloc_size(n * sizeof(double)) + alloc_size(n * sizeof(float));
    int ndir = r->tab_d[1] != r->tab_d[0] ? 2 : 1;
    size_t arrays = r->narrays ? alloc_size(r->narrays * r->half * sizeof(double)) : 0;
    return alloc_size(sizeof *r) + alloc_size(r->half * sizeof(double)) + arrays +
           (size_t)ndir * tables;
}

/* ---------------------------------------------------------------------------------------- */
/* Kernels: one head, pairs 0..n-1 of a segment, c/s the matching cos/sin                   */
/* ---------------------------------------------------------------------------------------- */
/* (a, b) -> (a c - b s, b c + a s) with s negated when inv is set (the inverse, or a negative
 * position outside the table, see rope_split). o may equal x exactly: each pair is read before it
 * is written and pairs are independent. */

/* interleaved: x = (a0 b0 a1 b1 ...), 2n values */
static void rot_inter_f(const float *x, float *o, const float *c, const float *s, size_t n,
                        int inv)
{
    const float sg = inv ? -1.0f : 1.0f;
    #pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float a = x[2 * i], b = x[2 * i + 1], ci = c[i], si = sg * s[i];
        o[2 * i]     = a * ci - b * si;
        o[2 * i + 1] = b * ci + a * si;
    }
}

/* half-split: xa = (a0 .. a_{n-1}), xb = (b0 .. b_{n-1}) */
static void rot_half_f(const float *xa, const float *xb, float *oa, float *ob, const float *c,
                       const float *s, size_t n, int inv)
{
    const float sg = inv ? -1.0f : 1.0f;
    #pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float a = xa[i], b = xb[i], ci = c[i], si = sg * s[i];
        oa[i] = a * ci - b * si;
        ob[i] = b * ci + a * si;
    }
}

static void rot_inter_d(const double *x, double *o, const double *c, const double *s, size_t n,
                        int inv)
{
    const double sg = inv ? -1.0 : 1.0;
    #pragma omp simd
    for (size_t i = 0; i < n; i++) {
        double a = x[2 * i], b = x[2 * i + 1], ci = c[i], si = sg * s[i];
        o[2 * i]     = a * ci - b * si;
        o[2 * i + 1] = b * ci + a * si;
    }
}

static void rot_half_d(const double *xa, const double *xb, double *oa, double *ob,
                       const double *c, const double *s, size_t n, int inv)
{
    const double sg = inv ? -1.0 : 1.0;
    #pragma omp simd
    for (size_t i = 0; i < n; i++) {
        double a = xa[i], b = xb[i], ci = c[i], si = sg * s[i];
        oa[i] = a * ci - b * si;
        ob[i] = b * ci + a * si;
    }
}

#if RK_ROPE_X86
/* AVX2 versions of the float kernels. mul, mul, add/sub in the scalar order (no FMA):
 * a*c + b*(-s) == a*c - b*s and b*c + a*s are exact identities, so the bits match the loops
 * above. The tails repeat the scalar loop here instead of calling it: a (tail) call into
 * SSE code with dirty upper ymm halves skips GCC's vzeroupper and made every later SSE
 * instruction pay the AVX-SSE transition (measured: 3x slower). */
__attribute__((target("avx2")))
static inline __m256 inter_avx2(__m256 v, __m256 cc, __m256 ss, __m256 sgn)
{
    __m256 w = _mm256_permute_ps(v, 0xB1);       /* (b0 a0 b1 a1 ...) */
    return _mm256_add_ps(_mm256_mul_ps(v, cc), _mm256_mul_ps(w, _mm256_xor_ps(ss, sgn)));
}

/* x = (a0 b0 a1 b1 a2 b2 a3 b3): out = x * (c0 c0 c1 c1 ..) + swap(x) * (-s0 s0 -s1 s1 ..).
 * 8 pairs per step: the 8 cos (sin) are spread over two vectors by two cross-lane permutes
 * (vpermps), one in-lane permute swaps each x vector: 6 shuffles per 16 outputs. The first
 * version spread 4 at a time with unpacklo/unpackhi and an insert (7 shuffles per 8 outputs)
 * and ran at about half the speed of the half-split kernel when the data were in cache. */
__attribute__((target("avx2")))
static void rot_inter_f_avx2(const float *x, float *o, const float *c, const float *s,
                             size_t n, int inv)
{
    const __m256 sgn = inv ? _mm256_setr_ps(0.f, -0.f, 0.f, -0.f, 0.f, -0.f, 0.f, -0.f)
                           : _mm256_setr_ps(-0.f, 0.f, -0.f, 0.f, -0.f, 0.f, -0.f, 0.f);
    const __m256i lo = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    const __m256i hi = _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 c8 = _mm256_loadu_ps(c + i), s8 = _mm256_loadu_ps(s + i);
        _mm256_storeu_ps(o + 2 * i, inter_avx2(_mm256_loadu_ps(x + 2 * i),
                                               _mm256_permutevar8x32_ps(c8, lo),
                                               _mm256_permutevar8x32_ps(s8, lo), sgn));
        _mm256_storeu_ps(o + 2 * i + 8, inter_avx2(_mm256_loadu_ps(x + 2 * i + 8),
                                                   _mm256_permutevar8x32_ps(c8, hi),
                                                   _mm256_permutevar8x32_ps(s8, hi), sgn));
    }
    if (i + 4 <= n) {
        __m256 c4 = _mm256_castps128_ps256(_mm_loadu_ps(c + i));
        __m256 s4 = _mm256_castps128_ps256(_mm_loadu_ps(s + i));
        _mm256_storeu_ps(o + 2 * i, inter_avx2(_mm256_loadu_ps(x + 2 * i),
                                               _mm256_permutevar8x32_ps(c4, lo),
                                               _mm256_permutevar8x32_ps(s4, lo), sgn));
        i += 4;
    }
    const float sg = inv ? -1.0f : 1.0f;
    for (; i < n; i++) {
        float a = x[2 * i], b = x[2 * i + 1], ci = c[i], si = sg * s[i];
        o[2 * i]     = a * ci - b * si;
        o[2 * i + 1] = b * ci + a * si;
    }
}

__attribute__((target("avx2")))
static void rot_half_f_avx2(const float *xa, const float *xb, float *oa, float *ob,
                            const float *c, const float *s, size_t n, int inv)
{
    const __m256 sgn = _mm256_set1_ps(inv ? -0.f : 0.f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 a = _mm256_loadu_ps(xa + i), b = _mm256_loadu_ps(xb + i);
        __m256 ci = _mm256_loadu_ps(c + i);
        __m256 si = _mm256_xor_ps(_mm256_loadu_ps(s + i), sgn);
        __m256 ra = _mm256_sub_ps(_mm256_mul_ps(a, ci), _mm256_mul_ps(b, si));
        __m256 rb = _mm256_add_ps(_mm256_mul_ps(b, ci), _mm256_mul_ps(a, si));
        _mm256_storeu_ps(oa + i, ra);
        _mm256_storeu_ps(ob + i, rb);
    }
    const float sg = inv ? -1.0f : 1.0f;
    for (; i < n; i++) {
        float a = xa[i], b = xb[i], ci = c[i], si = sg * s[i];
        oa[i] = a * ci - b * si;
        ob[i] = b * ci + a * si;
    }
}

/* AVX-512 versions: the same operations (no FMA), 16 floats per vector, so again the portable
 * bits. The bodies use plain loads and stores; only the tail is one masked vector (lanes past
 * the end neither read nor written): masked loads in the body ran at a third of the speed on
 * Zen 5 (they wait for the older stores of the rotation in place). Interleaved: the cos/sin
 * of 8 pairs are spread to (c0 c0 c1 c1 ..) by one permute each. */
#define RK_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2")))
RK_AVX512
static inline __m512 inter_avx512(__m512 v, __m256 c8, __m256 s8, __m512 sgn)
{
    const __m512i dup = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    __m512 cc = _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(c8));
    __m512 ss = _mm512_xor_ps(_mm512_permutexvar_ps(dup, _mm512_castps256_ps512(s8)), sgn);
    __m512 w = _mm512_permute_ps(v, 0xB1);       /* (b0 a0 b1 a1 ...) */
    return _mm512_add_ps(_mm512_mul_ps(v, cc), _mm512_mul_ps(w, ss));
}

RK_AVX512
static void rot_inter_f_avx512(const float *x, float *o, const float *c, const float *s,
                               size_t n, int inv)
{
    /* out = x * (c0 c0 c1 c1 ..) + swap(x) * (-s0 s0 -s1 s1 ..) (s negated for inv) */
    const __m512 sgn = _mm512_castsi512_ps(_mm512_set1_epi64(inv ? (long long)0x8000000000000000ULL
                                                                  : (long long)0x80000000ULL));
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm512_storeu_ps(o + 2 * i, inter_avx512(_mm512_loadu_ps(x + 2 * i), _mm256_loadu_ps(c + i),
                                                 _mm256_loadu_ps(s + i), sgn));
    if (i < n) {
        const __mmask8 k8 = (__mmask8)((1u << (n - i)) - 1u);
        const __mmask16 k16 = (__mmask16)((1u << (2 * (n - i))) - 1u);
        _mm512_mask_storeu_ps(o + 2 * i, k16,
                              inter_avx512(_mm512_maskz_loadu_ps(k16, x + 2 * i),
                                           _mm256_maskz_loadu_ps(k8, c + i),
                                           _mm256_maskz_loadu_ps(k8, s + i), sgn));
    }
}

RK_AVX512
static inline void half_avx512(__m512 a, __m512 b, __m512 ci, __m512 si, __m512 *ra, __m512 *rb)
{
    *ra = _mm512_sub_ps(_mm512_mul_ps(a, ci), _mm512_mul_ps(b, si));
    *rb = _mm512_add_ps(_mm512_mul_ps(b, ci), _mm512_mul_ps(a, si));
}

RK_AVX512
static void rot_half_f_avx512(const float *xa, const float *xb, float *oa, float *ob,
                              const float *c, const float *s, size_t n, int inv)
{
    const __m512 sgn = _mm512_set1_ps(inv ? -0.f : 0.f);
    __m512 ra, rb;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        half_avx512(_mm512_loadu_ps(xa + i), _mm512_loadu_ps(xb + i), _mm512_loadu_ps(c + i),
                    _mm512_xor_ps(_mm512_loadu_ps(s + i), sgn), &ra, &rb);
        _mm512_storeu_ps(oa + i, ra);
        _mm512_storeu_ps(ob + i, rb);
    }
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
        half_avx512(_mm512_maskz_loadu_ps(k, xa + i), _mm512_maskz_loadu_ps(k, xb + i),
                    _mm512_maskz_loadu_ps(k, c + i),
                    _mm512_xor_ps(_mm512_maskz_loadu_ps(k, s + i), sgn), &ra, &rb);
        _mm512_mask_storeu_ps(oa + i, k, ra);
        _mm512_mask_storeu_ps(ob + i, k, rb);
    }
}
#endif

/* ---------------------------------------------------------------------------------------- */
/* Rows                                                                                     */
/* ---------------------------------------------------------------------------------------- */

/* Pairs [i0, i0 + n) of every head of one row; c, s hold the cos/sin of those n pairs. */
static void row_pairs_f(const rk_rope *r, const float *x_t, float *o_t, size_t heads,
                        const float *c, const float *s, size_t i0, size_t n, int inv)
{
    size_t dim = r->cfg.dim, h = r->half;
    for (size_t hd = 0; hd < heads; hd++) {
        const float *x = x_t + hd * dim;
        float *o = o_t + hd * dim;
        if (r->cfg.style == RK_ROPE_INTERLEAVED) {
#if RK_ROPE_X86
            if (r->isa >= RK_ISA_AVX512) { rot_inter_f_avx512(x + 2 * i0, o + 2 * i0, c, s, n, inv); continue; }
            if (r->isa >= RK_ISA_AVX2) { rot_inter_f_avx2(x + 2 * i0, o + 2 * i0, c, s, n, inv); continue; }
#endif
            rot_inter_f(x + 2 * i0, o + 2 * i0, c, s, n, inv);
        } else {
#if RK_ROPE_X86
            if (r->isa >= RK_ISA_AVX512) {
                rot_half_f_avx512(x + i0, x + h + i0, o + i0, o + h + i0, c, s, n, inv);
                continue;
            }
            if (r->isa >= RK_ISA_AVX2) {
                rot_half_f_avx2(x + i0, x + h + i0, o + i0, o + h + i0, c, s, n, inv);
                continue;
            }
#endif
            rot_half_f(x + i0, x + h + i0, o + i0, o + h + i0, c, s, n, inv);
        }
    }
}

static void row_pairs_d(const rk_rope *r, const double *x_t, double *o_t, size_t heads,
                        const double *c, const double *s, size_t i0, size_t n, int inv)
{
    size_t dim = r->cfg.dim, h = r->half;
    for (size_t hd = 0; hd < heads; hd++) {
        const double *x = x_t + hd * dim;
        double *o = o_t + hd * dim;
        if (r->cfg.style == RK_ROPE_INTERLEAVED)
            rot_inter_d(x + 2 * i0, o + 2 * i0, c, s, n, inv);
        else
            rot_half_d(x + i0, x + h + i0, o + i0, o + h + i0, c, s, n, inv);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Positions outside the table                                                              */
/* ---------------------------------------------------------------------------------------- */

/* Pairs whose angle and cos/sin of a T theta_i one stack cache holds (ang, ca, sa: 6 KB).
 * Rows with more pairs (rotary_dim > 512) go over a run once per 256 pairs. */
#define RK_ROPE_CACHE 256

/* Largest |p| whose cos/sin get the angle-rounding correction of combine_d: there the gap g
 * is <= 2u |p| theta <= 2^-20 theta, so its truncation g^2 / 2 stays below ~5e-13 theta^2.
 * Beyond, g would grow to radians and the linear correction would leave the unit circle;
 * those positions use the plain angle addition (cos/sin of fl(aT th) + fl(b th)), within
 * m u (2 |p| theta + 9) of the direct formula, whose own angle may be off by 2^-21 theta and
 * more there. */
#define RK_ROPE_CORR_MAX ((uint64_t)1 << 32)

/* |p| = a T + b with 0 <= b < T; a negative position is its mirror: cos(-x) = cos x,
 * sin(-x) = -sin x, and fl(p theta) = -fl(|p| theta), so the direct formula is exactly
 * symmetric too. The kernels negate s for p < 0 by flipping their sign flag (inv ^ neg), an
 * exact operation. a == 0 and p >= 0 exactly when p is in the table. */
static void rope_split(int64_t p, size_t T, int *neg, uint64_t *a, size_t *b)
{
    uint64_t mag = p < 0 ? (uint64_t)0 - (uint64_t)p : (uint64_t)p;
    *neg = p < 0;
    *a = mag / (uint64_t)T;
    *b = (size_t)(mag % (uint64_t)T);
}

/* The angle fl(A theta_i) and its cos/sin (no attention factor) for pairs [i0, i0 + n),
 * computed directly: once per run of rows sharing a. */
static void rope_cs_base(const rk_rope *r, double A, size_t i0, size_t n, double *ang,
                         double *ca, double *sa)
{
    for (size_t i = 0; i < n; i++) {
        double x = A * r->theta[i0 + i];
        ang[i] = x;
        ca[i] = cos(x);
        sa[i] = sin(x);
    }
}

/* cos/sin at |p| = A + b (pa = |p|, bd = b as doubles) for n pairs, from the run's angle ang =
 * fl(A theta), ca, sa and the table row cb, sb = m cos/sin(fl(b theta)) (m: mscale, or
 * 1/mscale for the inverse):
 *   angle addition  c0 = ca cb - sa sb,  s0 = sa cb + ca sb     = m cos/sin(fl(A th) + fl(b th))
 *   rounding gap    g = (fl(pa th) - ang) - fl(bd th)          = fl(p th) - fl(A th) - fl(b th)
 *   correction      c = c0 - s0 g,  s = s0 + c0 g              ~ m cos/sin(fl(p th))
 * so the result tracks the direct formula m cos(fl(p theta)) (the table's formula), rounding
 * of the angle included, not just the exact cos(p theta). g is exact up to one rounding of
 * a tiny value: fl(pa th) - ang is exact by Sterbenz (for a >= 1, A <= |p| < 2A), and
 * fl(pa th) - fl(A th) - fl(b th) is the sum of three angle roundings, |g| <= 2u |p| theta
 * (u = 2^-53). For a == 0 (p in (-T, 0)) ang = 0 and g = 0: the table row itself, the
 * direct formula's bits.
 *
 * Accuracy against the direct formula m cos/sin(fl(p theta)), |p| <= 2^53:
 *   ca, sa (< 1 ulp, <= u each), weighted by |cb| + |sb| <= sqrt2 m;   table entries (< 1 ulp
 *   of cos/sin, then the product by m: <= 2u m each), weighted by |ca| + |sa| <= sqrt2;
 *   two products and a sum: <= 2u m (|ca cb| + |sa sb| <= 1);   the correction's own
 *   rounding <= u m (g s0 is tiny) and its truncation (1 - cos g, g - sin g) <= m g^2 / 2;
 *   the direct formula's own cos/sin and product by m: <= 2u m.
 * Total: |c - c_direct|, |s - s_direct| <= m [(3 sqrt2 + 5) u + g^2 / 2]
 *                                        <= m [10 u + 2 (u |p| theta)^2]   (|p| <= 2^32),
 * five ulps of 1 for |p| theta < 2^26. Without the correction (corr == 0, |p| > 2^32) the
 * angle roundings stay: <= m u (2 |p| theta + 9). tests/test_rope.c checks both bounds.
 * The float path rounds these values, so it equals the direct formula rounded to float but
 * for rare last-bit flips at rounding ties. */
static void combine_d(const double *ang, const double *ca, const double *sa, const double *th,
                      double pa, double bd, int corr, const double *cb, const double *sb, size_t n,
                      double *c, double *s)
{
    #pragma omp simd
    for (size_t i = 0; i < n; i++) {
        double c0 = ca[i] * cb[i] - sa[i] * sb[i];
        double s0 = sa[i] * cb[i] + ca[i] * sb[i];
        double g = corr ? (pa * th[i] - ang[i]) - bd * th[i] : 0.0;
        c[i] = c0 - s0 * g;
        s[i] = s0 + c0 * g;
    }
}

/* The same values rounded to float (the double path's cos/sin rounded, as the table is). */
static void combine_f(const double *ang, const double *ca, const double *sa, const double *th,
                      double pa, double bd, int corr, const double *cb, const double *sb, size_t n,
                      float *c, float *s)
{
    #pragma omp simd
    for (size_t i = 0; i < n; i++) {
        double c0 = ca[i] * cb[i] - sa[i] * sb[i];
        double s0 = sa[i] * cb[i] + ca[i] * sb[i];
        double g = corr ? (pa * th[i] - ang[i]) - bd * th[i] : 0.0;
        c[i] = (float)(c0 - s0 * g);
        s[i] = (float)(s0 + c0 * g);
    }
}

#if RK_ROPE_X86
/* AVX2 combine_f: the same operations in the same order (no FMA) and the same rounding to
 * float, 4 pairs at a time, so the same bits as the loop above. */
__attribute__((target("avx2")))
static void combine_f_avx2(const double *ang, const double *ca, const double *sa,
                           const double *th, double pa, double bd, int corr, const double *cb,
                           const double *sb, size_t n, float *c, float *s)
{
    const __m256d vp = _mm256_set1_pd(pa), vb = _mm256_set1_pd(bd);
    const __m256d on = _mm256_castsi256_pd(_mm256_set1_epi64x(corr ? -1 : 0));
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256d a = _mm256_loadu_pd(ca + i), as = _mm256_loadu_pd(sa + i);
        __m256d b = _mm256_loadu_pd(cb + i), bs = _mm256_loadu_pd(sb + i);
        __m256d t = _mm256_loadu_pd(th + i);
        __m256d c0 = _mm256_sub_pd(_mm256_mul_pd(a, b), _mm256_mul_pd(as, bs));
        __m256d s0 = _mm256_add_pd(_mm256_mul_pd(as, b), _mm256_mul_pd(a, bs));
        __m256d g = _mm256_sub_pd(_mm256_sub_pd(_mm256_mul_pd(vp, t), _mm256_loadu_pd(ang + i)),
                                  _mm256_mul_pd(vb, t));
        g = _mm256_and_pd(g, on);                            /* +0 without the correction */
        _mm_storeu_ps(c + i, _mm256_cvtpd_ps(_mm256_sub_pd(c0, _mm256_mul_pd(s0, g))));
        _mm_storeu_ps(s + i, _mm256_cvtpd_ps(_mm256_add_pd(s0, _mm256_mul_pd(c0, g))));
    }
    for (; i < n; i++) {
        double c0 = ca[i] * cb[i] - sa[i] * sb[i];
        double s0 = sa[i] * cb[i] + ca[i] * sb[i];
        double g = corr ? (pa * th[i] - ang[i]) - bd * th[i] : 0.0;
        c[i] = (float)(c0 - s0 * g);
        s[i] = (float)(s0 + c0 * g);
    }
}

/* AVX-512 combine_f: 8 pairs at a time (plain loads), the tail one masked vector; the same
 * operations. */
RK_AVX512
static inline void combine8_avx512(__m512d a, __m512d as, __m512d b, __m512d bs, __m512d t,
                                   __m512d ang, __m512d vp, __m512d vb, __m512d on, __m256 *c,
                                   __m256 *s)
{
    __m512d c0 = _mm512_sub_pd(_mm512_mul_pd(a, b), _mm512_mul_pd(as, bs));
    __m512d s0 = _mm512_add_pd(_mm512_mul_pd(as, b), _mm512_mul_pd(a, bs));
    __m512d g = _mm512_sub_pd(_mm512_sub_pd(_mm512_mul_pd(vp, t), ang), _mm512_mul_pd(vb, t));
    g = _mm512_and_pd(g, on);                                /* +0 without the correction */
    *c = _mm512_cvtpd_ps(_mm512_sub_pd(c0, _mm512_mul_pd(s0, g)));
    *s = _mm512_cvtpd_ps(_mm512_add_pd(s0, _mm512_mul_pd(c0, g)));
}

RK_AVX512
static void combine_f_avx512(const double *ang, const double *ca, const double *sa,
                             const double *th, double pa, double bd, int corr, const double *cb,
                             const double *sb, size_t n, float *c, float *s)
{
    const __m512d vp = _mm512_set1_pd(pa), vb = _mm512_set1_pd(bd);
    const __m512d on = _mm512_castsi512_pd(_mm512_set1_epi64(corr ? -1 : 0));
    __m256 cv, sv;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        combine8_avx512(_mm512_loadu_pd(ca + i), _mm512_loadu_pd(sa + i), _mm512_loadu_pd(cb + i),
                        _mm512_loadu_pd(sb + i), _mm512_loadu_pd(th + i), _mm512_loadu_pd(ang + i),
                        vp, vb, on, &cv, &sv);
        _mm256_storeu_ps(c + i, cv);
        _mm256_storeu_ps(s + i, sv);
    }
    if (i < n) {
        const __mmask8 k = (__mmask8)((1u << (n - i)) - 1u);
        combine8_avx512(_mm512_maskz_loadu_pd(k, ca + i), _mm512_maskz_loadu_pd(k, sa + i),
                        _mm512_maskz_loadu_pd(k, cb + i), _mm512_maskz_loadu_pd(k, sb + i),
                        _mm512_maskz_loadu_pd(k, th + i), _mm512_maskz_loadu_pd(k, ang + i),
                        vp, vb, on, &cv, &sv);
        _mm256_mask_storeu_ps(c + i, k, cv);
        _mm256_mask_storeu_ps(s + i, k, sv);
    }
}
#endif

/* ---------------------------------------------------------------------------------------- */
/* Row ranges                                                                               */
/* ---------------------------------------------------------------------------------------- */
/* Rows [t0, t1) of the view, row t at pos[t] (pos != NULL) or pos0 + t. A row in the table
 * takes its cos/sin from it, exactly as ever. Out-of-table rows are taken in runs that share
 * the sign and a (found by subtraction from the run's a T: one division per run): cos/sin of
 * a T theta are computed once per run (per 256 pairs), then each row combines them with its
 * table row b, chunk by chunk on the stack. Channels r .. dim-1 of each head are copied
 * through. */

#define RK_POS_AT(t) (pos ? pos[t] : pos0 + (int64_t)(t))

/* End of the run that starts at row t (sign neg, base = a T): the following rows of the same
 * sign with 0 <= |p| - base < T. */
static size_t run_end(int64_t pos0, const int64_t *pos, size_t t, size_t t1, size_t T, int neg,
                      uint64_t base)
{
    size_t e = t + 1;
    for (; e < t1; e++) {
        int64_t q = RK_POS_AT(e);
        if ((q < 0) != neg) break;
        uint64_t mag = q < 0 ? (uint64_t)0 - (uint64_t)q : (uint64_t)q;
        if (mag < base || mag - base >= T) break;
    }
    return e;
}

/* Table row of row u of a run (sign neg, base = a T; run_end checked the range). */
static size_t run_b(int64_t q, int neg, uint64_t base)
{
    uint64_t mag = neg ? (uint64_t)0 - (uint64_t)q : (uint64_t)q;
    return (size_t)(mag - base);
}

static void pass_f(const rk_rope *r, const float *x_t, float *o_t, size_t heads)
{
    size_t dim = r->cfg.dim, rd = r->cfg.rotary_dim;
    if (o_t != x_t && rd < dim)
        for (size_t hd = 0; hd < heads; hd++)
            memcpy(o_t + hd * dim + rd, x_t + hd * dim + rd, (dim - rd) * sizeof *o_t);
}

static void pass_d(const rk_rope *r, const double *x_t, double *o_t, size_t heads)
{
    size_t dim = r->cfg.dim, rd = r->cfg.rotary_dim;
    if (o_t != x_t && rd < dim)
        for (size_t hd = 0; hd < heads; hd++)
            memcpy(o_t + hd * dim + rd, x_t + hd * dim + rd, (dim - rd) * sizeof *o_t);
}

/* Overflow of a rotation (issue 16): |rotated pair| = gain |pair| with gain mscale (1/mscale
 * inverse), so a row whose finite entries stay below MAX / (gain sqrt 2) cannot overflow; the
 * few rows above it have their output checked for Inf after the rotation (the input is read
 * before, since a rotation in place overwrites it). A row holding Inf passes it on. */
#define RK_ROPE_RISK_ROWS 256
static double risk_limit(const rk_rope *r, int inv, double type_max)
{
    double gain = inv ? 1.0 / r->mscale : r->mscale;
    return type_max / (gain * 1.4142135623730951) * 0.999;
}
/* max |x_i| over n values, NaN ignored: four independent chains (a single one is latency-bound
 * and, at -O2, OpenMP's simd reduction kept its accumulator in memory: 10x the rotation's time). */
static float maxabs_f_c(const float *x, size_t n)
{
    float m[4] = { 0, 0, 0, 0 };
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; k++) {
            float a = fabsf(x[i + k]);
            m[k] = a > m[k] ? a : m[k];
        }
    for (; i < n; i++) m[0] = fabsf(x[i]) > m[0] ? fabsf(x[i]) : m[0];
    float a = m[0] > m[1] ? m[0] : m[1], b = m[2] > m[3] ? m[2] : m[3];
    return a > b ? a : b;
}
#if RK_ROPE_X86
/* max(a, NaN) keeps a: vmaxps returns its second operand when either is NaN */
__attribute__((target("avx2")))
static float maxabs_f_avx2(const float *x, size_t n)
{
    const __m256 abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 m0 = _mm256_setzero_ps(), m1 = m0, m2 = m0, m3 = m0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        m0 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i), abs), m0);
        m1 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i + 8), abs), m1);
        m2 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i + 16), abs), m2);
        m3 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i + 24), abs), m3);
    }
    m0 = _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3));
    float t[8], mx = 0;
    _mm256_storeu_ps(t, m0);
    for (int k = 0; k < 8; k++) mx = t[k] > mx ? t[k] : mx;
    for (; i < n; i++) mx = fabsf(x[i]) > mx ? fabsf(x[i]) : mx;
    return mx;
}
RK_AVX512
static float maxabs_f_avx512(const float *x, size_t n)
{
    __m512 m0 = _mm512_setzero_ps(), m1 = m0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        m0 = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + i)), m0);
        m1 = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + i + 16)), m1);
    }
    float mx = _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
    for (; i < n; i++) mx = fabsf(x[i]) > mx ? fabsf(x[i]) : mx;
    return mx;
}
#endif
static double maxabs_d(const double *x, size_t n)
{
    double m[4] = { 0, 0, 0, 0 };
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; k++) {
            double a = fabs(x[i + k]);
            m[k] = a > m[k] ? a : m[k];
        }
    for (; i < n; i++) m[0] = fabs(x[i]) > m[0] ? fabs(x[i]) : m[0];
    double a = m[0] > m[1] ? m[0] : m[1], b = m[2] > m[3] ? m[2] : m[3];
    return a > b ? a : b;
}
static int row_risky_f(const rk_rope *r, const float *x, size_t n, double lim)
{
    float mx;
#if RK_ROPE_X86
    if (r->isa >= RK_ISA_AVX512) mx = maxabs_f_avx512(x, n);
    else if (r->isa >= RK_ISA_AVX2) mx = maxabs_f_avx2(x, n);
    else
#endif
    mx = maxabs_f_c(x, n);
    return (double)mx > lim && mx < INFINITY;
}
static int row_risky_d(const rk_rope *r, const double *x, size_t n, double lim)
{
    (void)r;
    double mx = maxabs_d(x, n);
    return mx > lim && mx < INFINITY;
}
#define RK_ROPE_HAS_INF(SFX, REAL)                                                              \
    static int row_has_inf_##SFX(const REAL *o, size_t n)                                       \
    {                                                                                           \
        int any = 0;                                                                            \
        for (size_t i = 0; i < n; i++) any |= o[i] == (REAL)INFINITY || o[i] == -(REAL)INFINITY; \
        return any;                                                                             \
    }
RK_ROPE_HAS_INF(f, float)
RK_ROPE_HAS_INF(d, double)
#undef RK_ROPE_HAS_INF

static void rows_f(const rk_rope *r, const float *x, size_t ldi, float *o, size_t ldo,
                   size_t heads, int64_t pos0, const int64_t *pos, size_t t0, size_t t1, int inv,
                   size_t *bad)
{
    const size_t cols = heads * r->cfg.dim;
    const double lim = risk_limit(r, inv, FLT_MAX);
    unsigned char risk[RK_ROPE_RISK_ROWS];
    size_t h = r->half, T = r->cfg.table_len;
    const double *tab = r->tab_d[inv];
    double ang[RK_ROPE_CACHE], ca[RK_ROPE_CACHE], sa[RK_ROPE_CACHE];
    float c[RK_ROPE_CHUNK], s[RK_ROPE_CHUNK];
    size_t t = t0;
    while (t < t1) {
        int64_t p = RK_POS_AT(t);
        if (p >= 0 && (uint64_t)p < (uint64_t)T) {          /* in the table, as ever */
            const float *cs = r->tab_f[inv] + (size_t)p * 2 * h;
            int rk = row_risky_f(r, x + t * ldi, cols, lim);
            row_pairs_f(r, x + t * ldi, o + t * ldo, heads, cs, cs + h, 0, h, inv);
            pass_f(r, x + t * ldi, o + t * ldo, heads);
            if (rk && row_has_inf_f(o + t * ldo, cols) && t < *bad) *bad = t;
            t++;
            continue;
        }
        uint64_t a;
        size_t b;
        int neg;
        rope_split(p, T, &neg, &a, &b);
        uint64_t base = a * (uint64_t)T;                    /* <= |p|: no overflow */
        size_t e = run_end(pos0, pos, t, t1, T, neg, base);
        if (e - t > RK_ROPE_RISK_ROWS) e = t + RK_ROPE_RISK_ROWS;
        int any_risk = 0;
        for (size_t u = t; u < e; u++) any_risk |= risk[u - t] = (unsigned char)row_risky_f(r, x + u * ldi, cols, lim);
        double A = (double)a * (double)T;
        int sg = inv ^ neg;                                 /* kernels negate s for p < 0 */
        for (size_t c0 = 0; c0 < h; c0 += RK_ROPE_CACHE) {
            size_t nc = h - c0 < RK_ROPE_CACHE ? h - c0 : RK_ROPE_CACHE;
            rope_cs_base(r, A, c0, nc, ang, ca, sa);
            for (size_t u = t; u < e; u++) {
                size_t bu = run_b(RK_POS_AT(u), neg, base);
                double pa = (double)(base + bu), bd = (double)bu;      /* |p|, b */
                int corr = base + bu <= RK_ROPE_CORR_MAX;
                const double *cb = tab + bu * 2 * h;
                for (size_t i0 = c0; i0 < c0 + nc; i0 += RK_ROPE_CHUNK) {
                    size_t n = c0 + nc - i0 < RK_ROPE_CHUNK ? c0 + nc - i0 : RK_ROPE_CHUNK;
                    size_t k = i0 - c0;
#if RK_ROPE_X86
                    if (r->isa >= RK_ISA_AVX512)
                        combine_f_avx512(ang + k, ca + k, sa + k, r->theta + i0, pa, bd, corr,
                                         cb + i0, cb + h + i0, n, c, s);
                    else if (r->isa >= RK_ISA_AVX2)
                        combine_f_avx2(ang + k, ca + k, sa + k, r->theta + i0, pa, bd, corr,
                                       cb + i0, cb + h + i0, n, c, s);
                    else
#endif
                    combine_f(ang + k, ca + k, sa + k, r->theta + i0, pa, bd, corr, cb + i0,
                              cb + h + i0, n, c, s);
                    row_pairs_f(r, x + u * ldi, o + u * ldo, heads, c, s, i0, n, sg);
                }
            }
        }
        for (size_t u = t; u < e; u++) pass_f(r, x + u * ldi, o + u * ldo, heads);
        for (size_t u = t; any_risk && u < e; u++)
            if (risk[u - t] && row_has_inf_f(o + u * ldo, cols) && u < *bad) *bad = u;
        t = e;
    }
}

static void rows_d(const rk_rope *r, const double *x, size_t ldi, double *o, size_t ldo,
                   size_t heads, int64_t pos0, const int64_t *pos, size_t t0, size_t t1, int inv,
                   size_t *bad)
{
    const size_t cols = heads * r->cfg.dim;
    const double lim = risk_limit(r, inv, DBL_MAX);
    unsigned char risk[RK_ROPE_RISK_ROWS];
    size_t h = r->half, T = r->cfg.table_len;
    const double *tab = r->tab_d[inv];
    double ang[RK_ROPE_CACHE], ca[RK_ROPE_CACHE], sa[RK_ROPE_CACHE];
    double c[RK_ROPE_CHUNK], s[RK_ROPE_CHUNK];
    size_t t = t0;
    while (t < t1) {
        int64_t p = RK_POS_AT(t);
        if (p >= 0 && (uint64_t)p < (uint64_t)T) {
            const double *cs = tab + (size_t)p * 2 * h;
            int rk = row_risky_d(r, x + t * ldi, cols, lim);
            row_pairs_d(r, x + t * ldi, o + t * ldo, heads, cs, cs + h, 0, h, inv);
            pass_d(r, x + t * ldi, o + t * ldo, heads);
            if (rk && row_has_inf_d(o + t * ldo, cols) && t < *bad) *bad = t;
            t++;
            continue;
        }
        uint64_t a;
        size_t b;
        int neg;
        rope_split(p, T, &neg, &a, &b);
        uint64_t base = a * (uint64_t)T;                    /* <= |p|: no overflow */
        size_t e = run_end(pos0, pos, t, t1, T, neg, base);
        if (e - t > RK_ROPE_RISK_ROWS) e = t + RK_ROPE_RISK_ROWS;
        int any_risk = 0;
        for (size_t u = t; u < e; u++) any_risk |= risk[u - t] = (unsigned char)row_risky_d(r, x + u * ldi, cols, lim);
        double A = (double)a * (double)T;
        int sg = inv ^ neg;                                 /* kernels negate s for p < 0 */
        for (size_t c0 = 0; c0 < h; c0 += RK_ROPE_CACHE) {
            size_t nc = h - c0 < RK_ROPE_CACHE ? h - c0 : RK_ROPE_CACHE;
            rope_cs_base(r, A, c0, nc, ang, ca, sa);
            for (size_t u = t; u < e; u++) {
                size_t bu = run_b(RK_POS_AT(u), neg, base);
                double pa = (double)(base + bu), bd = (double)bu;      /* |p|, b */
                int corr = base + bu <= RK_ROPE_CORR_MAX;
                const double *cb = tab + bu * 2 * h;
                for (size_t i0 = c0; i0 < c0 + nc; i0 += RK_ROPE_CHUNK) {
                    size_t n = c0 + nc - i0 < RK_ROPE_CHUNK ? c0 + nc - i0 : RK_ROPE_CHUNK;
                    size_t k = i0 - c0;
                    combine_d(ang + k, ca + k, sa + k, r->theta + i0, pa, bd, corr, cb + i0,
                              cb + h + i0, n, c, s);
                    row_pairs_d(r, x + u * ldi, o + u * ldo, heads, c, s, i0, n, sg);
                }
            }
        }
        for (size_t u = t; u < e; u++) pass_d(r, x + u * ldi, o + u * ldo, heads);
        for (size_t u = t; any_risk && u < e; u++)
            if (risk[u - t] && row_has_inf_d(o + u * ldo, cols) && u < *bad) *bad = u;
        t = e;
    }
}

#undef RK_POS_AT

/* Rows [*t0, *t1) of thread id out of nth: contiguous, sizes differing by at most one. */
static void thread_rows(size_t n, size_t id, size_t nth, size_t *t0, size_t *t1)
{
    size_t q = n / nth, rem = n % nth;
    *t0 = id * q + (id < rem ? id : rem);
    *t1 = *t0 + q + (id < rem ? 1 : 0);
}

/* ---------------------------------------------------------------------------------------- */
/* Apply                                                                                    */
/* ---------------------------------------------------------------------------------------- */

/* Checks shared by both precisions: views, heads, aliasing, positions. */
static int apply_check(const rk_rope *r, const void *in, size_t rows, size_t cols, size_t ld,
                       const void *out, size_t orows, size_t ocols, size_t old, size_t elt,
                       int64_t pos0, const int64_t *pos)
{
    if (!r) RK_FAIL(RK_EINVAL, "rope: NULL plan");
    int rc = rk__check_view("rope in", in, rows, cols, ld, rows, cols);
    if (rc) return rc;
    rc = rk__check_view("rope out", out, orows, ocols, old, rows, cols);
    if (rc) return rc;
    if (cols % r->cfg.dim)
        RK_FAIL(RK_EDIM, "rope: %zu columns is not a multiple of dim = %zu", cols, r->cfg.dim);
    if (rows == 0 || cols == 0) return RK_OK;
    /* Only exact aliasing (in place) is allowed; any other overlap of the spans would make a
     * row read values another row already rotated. Spans are compared conservatively. */
    size_t span = ((rows - 1) * ld + cols) * elt, ospan = ((rows - 1) * old + cols) * elt;
    uintptr_t a = (uintptr_t)in, b = (uintptr_t)out;
    int same = a == b && (ld == old || rows == 1);
    if (!same && a < b + ospan && b < a + span)
        RK_FAIL(RK_EINVAL, "rope: out overlaps in without being the same view (in place needs "
                "the same data and ld)");
    if (!pos) {
        int64_t last;
        if (rows - 1 > (size_t)INT64_MAX || __builtin_add_overflow(pos0, (int64_t)(rows - 1), &last))
            RK_FAIL(RK_EOVERFLOW, "rope: positions pos0 = %lld + %zu rows overflow int64",
                    (long long)pos0, rows);
    }
    return RK_OK;
}

/* RK_ENONFINITE naming the first row whose rotation overflowed (bad < n), else RK_OK. */
static int rope_overflow(const rk_rope *r, size_t bad, size_t n, int64_t pos0, const int64_t *pos,
                         int inv, const char *type)
{
    if (bad >= n) return RK_OK;
    RK_FAIL(RK_ENONFINITE, "rope: row %zu (position %lld): a rotated pair overflows %s (its "
            "length%s is beyond the type's range; the input is finite)", bad,
            (long long)(pos ? pos[bad] : pos0 + (int64_t)bad), type,
            r->mscale != 1.0 ? (inv ? " divided by mscale" : " times mscale") : "");
}

int rk_rope_apply(const rk_rope *r, const rk_mat *in, rk_mat *out, int64_t pos0,
                  const int64_t *pos, int inverse)
{
    rk__clear_error();
    if (!in || !out) RK_FAIL(RK_EINVAL, "rope: NULL view");
    int rc = apply_check(r, in->data, in->rows, in->cols, in->ld, out->data, out->rows,
                         out->cols, out->ld, sizeof(float), pos0, pos);
    if (rc || in->rows == 0 || in->cols == 0) return rc;

    /* in, out: (n, heads * dim), ld_in, ld_out; row t at pos[t] or pos0 + t */
    size_t n = in->rows, heads = in->cols / r->cfg.dim, ldi = in->ld, ldo = out->ld;
    const float *x = in->data;
    float *o = out->data;
    int inv = inverse != 0;
    size_t bad = SIZE_MAX;
    if (n * in->cols > RK_ROPE_PAR_MIN && omp_get_max_threads() > 1) {
        #pragma omp parallel
        {
            size_t t0, t1, b = SIZE_MAX;
            thread_rows(n, (size_t)omp_get_thread_num(), (size_t)omp_get_num_threads(), &t0, &t1);
            rows_f(r, x, ldi, o, ldo, heads, pos0, pos, t0, t1, inv, &b);
            #pragma omp critical
            if (b < bad) bad = b;
        }
    } else {
        rows_f(r, x, ldi, o, ldo, heads, pos0, pos, 0, n, inv, &bad);
    }
    return rope_overflow(r, bad, n, pos0, pos, inv, "float32");
}

int rk_rope_apply_d(const rk_rope *r, const rk_matd *in, rk_matd *out, int64_t pos0,
                    const int64_t *pos, int inverse)
{
    rk__clear_error();
    if (!in || !out) RK_FAIL(RK_EINVAL, "rope: NULL view");
    int rc = apply_check(r, in->data, in->rows, in->cols, in->ld, out->data, out->rows,
                         out->cols, out->ld, sizeof(double), pos0, pos);
    if (rc || in->rows == 0 || in->cols == 0) return rc;

    size_t n = in->rows, heads = in->cols / r->cfg.dim, ldi = in->ld, ldo = out->ld;
    const double *x = in->data;
    double *o = out->data;
    int inv = inverse != 0;
    size_t bad = SIZE_MAX;
    if (n * in->cols > RK_ROPE_PAR_MIN && omp_get_max_threads() > 1) {
        #pragma omp parallel
        {
            size_t t0, t1, b = SIZE_MAX;
            thread_rows(n, (size_t)omp_get_thread_num(), (size_t)omp_get_num_threads(), &t0, &t1);
            rows_d(r, x, ldi, o, ldo, heads, pos0, pos, t0, t1, inv, &b);
            #pragma omp critical
            if (b < bad) bad = b;
        }
    } else {
        rows_d(r, x, ldi, o, ldo, heads, pos0, pos, 0, n, inv, &bad);
    }
    return rope_overflow(r, bad, n, pos0, pos, inv, "float64");
}
