/* ropekit: rotary position embedding (RoPE) and attention kernels in C11.
 *
 * One header, prefix rk_ (types, functions) and RK_ (constants). The model is FFTW's:
 * a plan is created once (all validation, tables, random features and scratch memory),
 * then executed many times with no allocation. Every fallible function returns an int
 * status (RK_OK = 0); rk_strerror() names the code and rk_last_error() gives the
 * detailed message of the last failure on the calling thread. The library never prints,
 * never exits and never aborts on bad input.
 *
 * Matrices are row-major views with an explicit leading dimension (elements, not bytes):
 * element (i, j) of a view m is m.data[i * m.ld + j], with ld >= cols. Heads and batches
 * are views into the caller's buffers (see rk_mat_sub); views never own memory.
 *
 *   rk_rope *rope;  rk_rope_config rc = { .dim = 64 };            // zero fields = defaults
 *   if (rk_rope_create(&rope, &rc)) fprintf(stderr, "%s\n", rk_last_error());
 *   rk_mat x = rk_mat_view(buf, n, 64, 64);
 *   rk_rope_apply(rope, &x, &x, 0, NULL, 0);                    // in place, rows at 0..n-1
 *
 *   rk_attn *att;  rk_attn_config ac = { .kind = RK_SOFTMAX, .n_q = n, .n_kv = n, .d = 64,
 *                                        .causal = 1, .rope = RK_ROPE_QK };
 *   rk_attn_create(&att, &ac);  rk_attn_execute(att, &q, &k, &v, &out, RK_ALL_KEYS);
 */
#ifndef ROPEKIT_H
#define ROPEKIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#  define RK_NODISCARD __attribute__((warn_unused_result))
#else
#  define RK_NODISCARD
#endif

#define RK_VERSION_MAJOR 0
#define RK_VERSION_MINOR 1
#define RK_VERSION_PATCH 0
#define RK_VERSION "0.1.0"
const char *rk_version(void);

/* ------------------------------------------------------------------------------------ */
/* Errors                                                                               */
/* ------------------------------------------------------------------------------------ */
enum {
    RK_OK = 0,
    RK_EINVAL,      /* invalid configuration or argument value                          */
    RK_EDIM,        /* shape/size mismatch, odd dimension where pairs are needed         */
    RK_ENOMEM,      /* allocation failed                                                */
    RK_EOVERFLOW,   /* a size (or byte count) does not fit the index type it must use   */
    RK_EUNSUP,      /* valid but not supported (e.g. a .npy dtype we do not read)       */
    RK_EDEP,        /* a dependency (GSL, FFTW, BLAS) refused                           */
    RK_EIO,         /* file could not be opened, read or written                        */
    RK_EFORMAT,     /* malformed file contents                                          */
    RK_ENONFINITE,  /* NaN or Inf in an input that must be finite                       */
    RK_NERRORS
};
const char *rk_strerror(int err);   /* short name of a code; never NULL                 */
const char *rk_last_error(void);    /* detail of the last failure on this thread, or "" */

/* ------------------------------------------------------------------------------------ */
/* Matrix views                                                                         */
/* ------------------------------------------------------------------------------------ */
typedef struct { float  *data; size_t rows, cols, ld; } rk_mat;    /* float32 */
typedef struct { double *data; size_t rows, cols, ld; } rk_matd;   /* float64 */

static inline rk_mat rk_mat_view(float *p, size_t rows, size_t cols, size_t ld)
{ rk_mat m = { p, rows, cols, ld }; return m; }
static inline rk_matd rk_matd_view(double *p, size_t rows, size_t cols, size_t ld)
{ rk_matd m = { p, rows, cols, ld }; return m; }
/* Zero-copy sub-block (rows i..i+r-1, cols j..j+c-1), like gsl_matrix_submatrix. */
static inline rk_mat rk_mat_sub(rk_mat m, size_t i, size_t j, size_t r, size_t c)
{ rk_mat s = { m.data + i * m.ld + j, r, c, m.ld }; return s; }
static inline rk_matd rk_matd_sub(rk_matd m, size_t i, size_t j, size_t r, size_t c)
{ rk_matd s = { m.data + i * m.ld + j, r, c, m.ld }; return s; }

/* Owning allocation, 64-byte aligned, ld = cols, zero-filled. Free with rk_mat_free
 * (safe on a zeroed struct). */
RK_NODISCARD int rk_mat_alloc(rk_mat *m, size_t rows, size_t cols);
RK_NODISCARD int rk_matd_alloc(rk_matd *m, size_t rows, size_t cols);
void rk_mat_free(rk_mat *m);
void rk_matd_free(rk_matd *m);

/* ------------------------------------------------------------------------------------ */
/* RoPE                                                                                 */
/* ------------------------------------------------------------------------------------ */
/* Pairing layout of the r rotated channels of one head (r = rotary_dim):
 *   RK_ROPE_INTERLEAVED (RoFormer eq. 34, GPT-J):  pairs (x[2i], x[2i+1])      [c s c s ...]
 *   RK_ROPE_HALF        (GPT-NeoX, HF LLaMA):      pairs (x[i],  x[i + r/2])   [c c ... s s]
 * Pair i is rotated counter-clockwise by angle pos * theta_i:
 *   (a, b) -> (a cos - b sin, a sin + b cos),   theta_i = base^(-2i/r), i = 0 .. r/2 - 1,
 * then modified by the scaling (PAPER.md section 7):
 *   RK_SCALE_LINEAR  theta_i / s                          (position interpolation)
 *   RK_SCALE_NTK     base' = base * s^(r/(r-2))            (NTK-aware)
 *   RK_SCALE_YARN    theta_i' = (1-g_i) theta_i / s + g_i theta_i, g_i = ramp(L theta_i / 2pi)
 *                    between beta_slow and beta_fast, and cos/sin multiplied by the attention
 *                    factor (default 0.1 ln s + 1).
 * Channels r .. dim-1 pass through unchanged (partial rotary). Angles are formed in double
 * (pos * theta_i) before cos/sin, so float32 results stay accurate at positions >= 1e6. */
typedef enum { RK_ROPE_INTERLEAVED = 0, RK_ROPE_HALF = 1 } rk_rope_style;
typedef enum { RK_SCALE_NONE = 0, RK_SCALE_LINEAR, RK_SCALE_NTK, RK_SCALE_YARN } rk_rope_scaling;

typedef struct {
    size_t          dim;          /* head width d (channels per head); must be > 0          */
    size_t          rotary_dim;   /* r rotated channels, even, <= dim (0: r = dim)          */
    rk_rope_style   style;        /* 0: interleaved                                         */
    double          base;         /* 0: 10000                                               */
    rk_rope_scaling scaling;      /* 0: none                                                */
    double          factor;       /* s > 0 for linear/ntk/yarn (0 with a scaling: EINVAL)   */
    double          orig_ctx;     /* yarn: trained context length L (0: 4096)               */
    double          beta_fast;    /* yarn: 0 -> 32                                          */
    double          beta_slow;    /* yarn: 0 -> 1                                           */
    double          attn_factor;  /* yarn: 0 -> 0.1 ln s + 1; other scalings: 0 -> 1        */
    size_t          table_len;    /* cos/sin table covers positions [0, table_len) (0: 4096);
                                     positions outside it are computed directly, same bits  */
} rk_rope_config;

typedef struct rk_rope rk_rope;
RK_NODISCARD int rk_rope_create(rk_rope **out, const rk_rope_config *cfg);
void rk_rope_destroy(rk_rope *r);                           /* NULL-safe */
const rk_rope_config *rk_rope_get_config(const rk_rope *r); /* defaults resolved */
const double *rk_rope_freqs(const rk_rope *r);              /* r/2 thetas after scaling */
double rk_rope_mscale(const rk_rope *r);                    /* cos/sin multiplier (yarn;
                                                               1 for s <= 1, as in HF)     */
size_t rk_rope_bytes(const rk_rope *r);                     /* memory held by the plan   */

/* Rotate every row of `in` into `out` (same shape; out may alias in exactly, for in place).
 * in->cols must be a multiple of dim: each consecutive group of dim channels is one head, all
 * at the row's position (layout (n, heads, dim), so cos/sin are shared across heads).
 * Row t is at position pos[t] if pos != NULL, else pos0 + t. inverse != 0 undoes the
 * rotation (R^T; with a yarn attention factor a, divides by a). */
RK_NODISCARD int rk_rope_apply(const rk_rope *r, const rk_mat *in, rk_mat *out,
                               int64_t pos0, const int64_t *pos, int inverse);
RK_NODISCARD int rk_rope_apply_d(const rk_rope *r, const rk_matd *in, rk_matd *out,
                                 int64_t pos0, const int64_t *pos, int inverse);

/* ------------------------------------------------------------------------------------ */
/* Attention                                                                            */
/* ------------------------------------------------------------------------------------ */
/* out_i = sum_j w_ij v_j / sum_j w_ij over the keys query i sees.
 * Shapes: Q (n_q, d), K (n_kv, d), V (n_kv, d_v), out (n_q, d_v).
 * Causal alignment is bottom-right: query i sees keys j <= i + (n_kv - n_q) (queries are the
 * last n_q positions). Positions (for RoPE): key j at pos_offset + j, query i at
 * pos_offset + (n_kv - n_q) + i. Key padding: execute's kv_len masks keys j >= kv_len
 * (RK_ALL_KEYS: none). A query that sees no key gets a zero output row. */
typedef enum { RK_SOFTMAX = 1, RK_PERFORMER, RK_LINEAR } rk_kind;
typedef enum { RK_ROPE_NONE = 0, RK_ROPE_QK, RK_ROPE_FEATURES } rk_rope_mode;
typedef enum { RK_KERNEL_POSITIVE = 0, RK_KERNEL_HYPERBOLIC, RK_KERNEL_TRIG } rk_kernel;
typedef enum { RK_MAP_ELU = 0, RK_MAP_RELU } rk_map;
typedef enum { RK_PROJ_ORTHOGONAL = 0, RK_PROJ_IID } rk_proj;
typedef enum { RK_NORM_CHI = 0, RK_NORM_FIXED } rk_proj_norm;

#define RK_ALL_KEYS ((size_t)-1)

typedef struct {
    rk_kind        kind;        /* required                                                 */
    size_t         n_q, n_kv;   /* rows of Q; rows of K and V                                */
    size_t         d, d_v;      /* width of Q, K; of V (0: d_v = d)                          */
    int            causal;
    double         scale;       /* softmax logit scale (0: 1/sqrt(d))                        */
    rk_rope_mode   rope;        /* RK_ROPE_QK: rotate q, k inside execute (RoFormer)         */
    rk_rope_config rope_cfg;    /* dim is filled in by the plan (d, or the feature width)   */
    int64_t        pos_offset;  /* added to every position                                   */
    int            nthreads;    /* 0: omp_get_max_threads() read at create time              */
    /* Performer / linear attention (issue 3). Ignored by RK_SOFTMAX. */
    size_t         n_features;  /* m (0: default)                                            */
    rk_kernel      kernel;      /* FAVOR+ feature kind                                       */
    rk_map         map;         /* RK_LINEAR feature map                                     */
    rk_proj        proj;        /* orthogonal blocks (default) or iid                        */
    rk_proj_norm   proj_norm;   /* row norms chi(d) (default) or sqrt(d)                     */
    unsigned long  seed;        /* FAVOR+: required (0 -> RK_EINVAL)                         */
    const float   *proj_data;   /* optional m x d projection to use instead of drawing one   */
    int            rope_freq_dim_head; /* RK_ROPE_FEATURES: theta over d instead of m       */
} rk_attn_config;

typedef struct rk_attn rk_attn;
RK_NODISCARD int rk_attn_create(rk_attn **out, const rk_attn_config *cfg);
void rk_attn_destroy(rk_attn *p);                            /* NULL-safe */
const rk_attn_config *rk_attn_get_config(const rk_attn *p);  /* defaults resolved */
size_t rk_attn_bytes(const rk_attn *p);                      /* working memory of the plan */

/* float32 path (fast kernels) and float64 path. Views must match the plan's shapes;
 * ld may change from call to call. out is written, never read; it must not overlap inputs.
 * Not reentrant: one plan per concurrent caller. Results are bitwise identical for any
 * thread count; float32 results may differ in the last bits between CPUs (AVX2 kernels vs
 * the portable ones). */
RK_NODISCARD int rk_attn_execute(rk_attn *p, const rk_mat *q, const rk_mat *k,
                                 const rk_mat *v, rk_mat *out, size_t kv_len);
RK_NODISCARD int rk_attn_execute_d(rk_attn *p, const rk_matd *q, const rk_matd *k,
                                   const rk_matd *v, rk_matd *out, size_t kv_len);

/* Performer / linear attention extras (issue 3). The projection a FAVOR+ plan uses
 * (m x d row-major, after row scaling), or NULL for kinds without one. */
const float *rk_attn_proj(const rk_attn *p, size_t *m, size_t *d);

/* Recurrent (causal) decoding: one (q, k, v) row at a time, O(m d) per token; the outputs
 * equal the causal batch result. Positions start at the plan's pos_offset. */
typedef struct rk_attn_state rk_attn_state;
RK_NODISCARD int rk_attn_state_create(rk_attn_state **out, const rk_attn *p);
void rk_attn_state_destroy(rk_attn_state *s);                /* NULL-safe */
void rk_attn_state_reset(rk_attn_state *s);
RK_NODISCARD int rk_attn_state_step(rk_attn_state *s, const float *q, const float *k,
                                    const float *v, float *out);
RK_NODISCARD int rk_attn_state_step_d(rk_attn_state *s, const double *q, const double *k,
                                      const double *v, double *out);

/* FAVOR+ / linear plan details (lib/performer.c). RK_PERFORMER: phi(x) with x' = sqrt(scale) x
 * estimates exp(scale q.k); m = n_features (0: 256); projection drawn at create from seed
 * (required unless proj_data: an m x d float array copied as-is); no eps; per-query and
 * causal prefix-max stabilisers (no look-ahead); a zero denominator gives a zero row.
 * RK_LINEAR: elu(x)+1 or relu(x) of q, k as given (scale unused), F = d, n_features 0 or d.
 * rope = RK_ROPE_FEATURES (eq. 19) needs F even (else RK_EDIM); rope_cfg applies with dim = F.
 * Feature width F of a FAVOR+ or linear plan: m (positive), 2m (hyperbolic: exp(+-w.x');
 * trig: sin, cos), d (elu+1, relu); 0 for other kinds. */
size_t rk_attn_feature_dim(const rk_attn *p);
/* The plan's feature map in double, unstabilised: phi (rows, F) of x (rows, d), with
 * E phi(x) . phi(y) = exp(scale x . y) for the random maps. pos == NULL: phi(x); otherwise row t
 * as the numerator sees it at position pos[t]: R phi(x) (rope = features), phi(R x) (rope = qk).
 * Uses the plan's scratch (not reentrant, like execute). */
RK_NODISCARD int rk_attn_features_d(rk_attn *p, const rk_matd *x, const int64_t *pos,
                                    rk_matd *phi);
/* Projection as .npy: save writes the plan's (m, d) projection as float32 (RK_EUNSUP without
 * one); load reads an (m, d) '<f4' or '<f8' array into an owning float matrix (free with
 * rk_mat_free) for cfg.proj_data = w->data, cfg.n_features = w->rows. */
RK_NODISCARD int rk_attn_proj_save(const rk_attn *p, const char *path);
RK_NODISCARD int rk_attn_proj_load(const char *path, size_t d, rk_mat *w);

/* ------------------------------------------------------------------------------------ */
/* NumPy .npy interchange                                                               */
/* ------------------------------------------------------------------------------------ */
/* Reads format versions 1.0, 2.0 (and 3.0); little-endian float32 ('<f4') and float64
 * ('<f8'), C order, up to RK_NPY_MAXDIM axes. Anything else is RK_EUNSUP or RK_EFORMAT. */
#define RK_NPY_MAXDIM 8
typedef enum { RK_F32 = 1, RK_F64 = 2 } rk_dtype;
typedef struct {
    rk_dtype dtype;
    int      ndim;
    size_t   shape[RK_NPY_MAXDIM];
    size_t   count;      /* product of shape (1 for ndim 0)   */
    void    *data;       /* owned; free with rk_array_free     */
} rk_array;

RK_NODISCARD int rk_npy_load(const char *path, rk_array *out);
RK_NODISCARD int rk_npy_load_mem(const void *buf, size_t len, rk_array *out);
/* Written atomically: a temporary file in the same directory, then rename(2). */
RK_NODISCARD int rk_npy_save(const char *path, const rk_array *a);
RK_NODISCARD int rk_array_alloc(rk_array *a, rk_dtype dt, int ndim, const size_t *shape);
void rk_array_free(rk_array *a);                               /* safe on a zeroed struct */
/* RK_ENONFINITE naming `name` and the first bad (multi-)index, or RK_OK. */
RK_NODISCARD int rk_array_check_finite(const rk_array *a, const char *name);

#ifdef __cplusplus
}
#endif
#endif /* ROPEKIT_H */
