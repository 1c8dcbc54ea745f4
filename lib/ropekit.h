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

/* The library is built with -fvisibility=hidden: only what this header declares is exported
 * from libropekit.so (internal rk__ symbols stay in the static archive for the tests). */
#if defined(__GNUC__)
#  pragma GCC visibility push(default)
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

/* Batches of heads: element (b, h, i, j) is data[b sb + h sh + i sn + j] (columns contiguous,
 * strides in elements). Both usual layouts are views, no copy:
 *   (b, h, n, d) contiguous: sb = h n d, sh = n d, sn = d   (rk_tensor_bhnd)
 *   (b, n, h, d) contiguous: sb = n h d, sh = d,   sn = h d (rk_tensor_bnhd)
 * Head (b, h) is the matrix view rk_tensor_slice(t, b, h): n x d with ld = sn. */
typedef struct { float  *data; size_t b, h, n, d, sb, sh, sn; } rk_tensor;
typedef struct { double *data; size_t b, h, n, d, sb, sh, sn; } rk_tensord;

static inline rk_tensor rk_tensor_bhnd(float *p, size_t b, size_t h, size_t n, size_t d)
{ rk_tensor t = { p, b, h, n, d, h * n * d, n * d, d }; return t; }
static inline rk_tensor rk_tensor_bnhd(float *p, size_t b, size_t h, size_t n, size_t d)
{ rk_tensor t = { p, b, h, n, d, n * h * d, d, h * d }; return t; }
static inline rk_tensord rk_tensord_bhnd(double *p, size_t b, size_t h, size_t n, size_t d)
{ rk_tensord t = { p, b, h, n, d, h * n * d, n * d, d }; return t; }
static inline rk_tensord rk_tensord_bnhd(double *p, size_t b, size_t h, size_t n, size_t d)
{ rk_tensord t = { p, b, h, n, d, n * h * d, d, h * d }; return t; }
static inline rk_mat rk_tensor_slice(const rk_tensor *t, size_t b, size_t h)
{ rk_mat m = { t->data + b * t->sb + h * t->sh, t->n, t->d, t->sn }; return m; }
static inline rk_matd rk_tensord_slice(const rk_tensord *t, size_t b, size_t h)
{ rk_matd m = { t->data + b * t->sb + h * t->sh, t->n, t->d, t->sn }; return m; }

/* Kernel paths (rk_attn_config.isa, rk_rope_config.isa): RK_ISA_AUTO picks, once at plan
 * creation, the widest the CPU has (AVX-512 > AVX2+FMA > portable C), unless the environment
 * variable ROPEKIT_ISA (portable | avx2 | avx512) names one; a path the CPU lacks is
 * RK_EUNSUP. Every path is tested against the double reference; within one path results are
 * the same bits for any thread count. rk_isa_name / rk_isa_available / rk_isa_resolve answer
 * for the running CPU (rk_isa_resolve: RK_ISA_AUTO as a plan would resolve it). */
typedef enum { RK_ISA_AUTO = 0, RK_ISA_PORTABLE, RK_ISA_AVX2, RK_ISA_AVX512 } rk_isa;
const char *rk_isa_name(rk_isa isa);
int rk_isa_available(rk_isa isa);
rk_isa rk_isa_resolve(rk_isa isa);

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
 *   (a, b) -> (a cos - b sin, a sin + b cos),   i = 0 .. r/2 - 1,
 * and cos, sin are multiplied by the attention factor m (rk_rope_mscale; 1 unless a scaling
 * or attn_factor sets it). Channels r .. dim-1 pass through unchanged (partial rotary).
 * Angles are formed in double (pos * theta_i) before cos/sin, so float32 results stay accurate
 * at positions >= 1e6.
 *
 * Frequencies (docs/theory.md#rope-scalings-and-xpos; Hugging Face transformers' modeling_rope_utils.py, whose
 * rope types and parameter names are used: s = factor, b = base = rope_theta, L = orig_ctx =
 * original_max_position_embeddings, M = max_pos = max_position_embeddings):
 *   t_i = b^(-2i/r) / f_i    with f_i = freq_factors[i] (per-pair divisors as ggml's
 *                            freq_factors; 1 without them)
 *   RK_SCALE_NONE        theta_i = t_i                       (HF "default")
 *   RK_SCALE_LINEAR      t_i / s                             (HF "linear", position interpolation)
 *   RK_SCALE_NTK         static NTK-aware: b' = b s^(r/(r-2)) (rotary-embedding-torch; not HF)
 *   RK_SCALE_DYNAMIC     HF "dynamic" (_compute_dynamic_ntk_parameters): with l = max(seq_len, M)
 *                        b' = b ((s l / M) - (s - 1))^(r/(r-2)); l <= M gives the default
 *                        frequencies, so they depend on the length
 *   RK_SCALE_YARN        HF "yarn" (_compute_yarn_parameters: find_correction_dim,
 *                        find_correction_range, linear_ramp_factor): a ramp over the pair index,
 *                        c(n) = r ln(L / (2 pi n)) / (2 ln b); lo = floor(c(beta_fast)),
 *                        hi = ceil(c(beta_slow)) (no floor/ceil with no_truncate), clamped to
 *                        [0, r-1], hi += 0.001 if equal; g_i = clamp((i - lo)/(hi - lo), 0, 1);
 *                        theta_i = (t_i / s) g_i + t_i (1 - g_i). s = factor, or M / L when
 *                        factor is 0 and max_pos is given. m = attn_factor, else
 *                        get_mscale(s, mscale) / get_mscale(s, mscale_all_dim) when both are
 *                        nonzero (DeepSeek), else get_mscale(s) = 0.1 ln s + 1 (1 for s <= 1)
 *   RK_SCALE_YARN_PAPER  the YaRN paper's text: ramp in the rotation count rho_i = L t_i / 2pi,
 *                        g_i = clamp((rho_i - beta_slow)/(beta_fast - beta_slow), 0, 1),
 *                        theta_i = (1 - g_i) t_i / s + g_i t_i; m = 0.1 ln s + 1 (1 for s <= 1).
 *                        (What `yarn` meant before; kept to compare the two.)
 *   RK_SCALE_LLAMA3      HF "llama3" (_compute_llama3_parameters): wavelength w_i = 2 pi / t_i;
 *                        w_i < L / high_freq_factor: t_i; w_i > L / low_freq_factor: t_i / s;
 *                        between: (1 - k) t_i / s + k t_i, k = (L / w_i - lo) / (hi - lo)
 *   RK_SCALE_LONGROPE    HF "longrope" (_compute_longrope_parameters): t_i / long_factor[i] when
 *                        seq_len > L, else t_i / short_factor[i]; m = attn_factor, else
 *                        sqrt(1 + ln s / ln L) (1 for s <= 1), s = factor or M / L
 *   freqs != NULL        theta_i = freqs[i] exactly (scaling must be RK_SCALE_NONE, no
 *                        freq_factors): any scheme as data
 * Every scheme ends as the r/2 numbers theta_i (rk_rope_freqs) and one m: the kernels never
 * look at the scaling. A length-dependent type (dynamic, longrope) is fixed for the seq_len of
 * the plan (HF: the largest position + 1 of the forward call); 0 means no length known (HF at
 * initialisation: dynamic gives the default frequencies, longrope the short factors). */
typedef enum { RK_ROPE_INTERLEAVED = 0, RK_ROPE_HALF = 1 } rk_rope_style;
typedef enum {
    RK_SCALE_NONE = 0, RK_SCALE_LINEAR, RK_SCALE_NTK, RK_SCALE_YARN, RK_SCALE_YARN_PAPER,
    RK_SCALE_DYNAMIC, RK_SCALE_LLAMA3, RK_SCALE_LONGROPE
} rk_rope_scaling;

typedef struct {
    size_t          dim;          /* head width d (channels per head); must be > 0          */
    size_t          rotary_dim;   /* r rotated channels, even, <= dim (0: r = dim)          */
    rk_rope_style   style;        /* 0: interleaved                                         */
    double          base;         /* 0: 10000                                               */
    rk_rope_scaling scaling;      /* 0: none                                                */
    double          factor;       /* s > 0 with a scaling (0: EINVAL, except yarn and
                                     longrope with max_pos: s = max_pos / orig_ctx)          */
    double          orig_ctx;     /* L, original_max_position_embeddings: yarn, yarn-paper,
                                     llama3, longrope (0: max_pos if given, else 4096)       */
    double          beta_fast;    /* yarn, yarn-paper: 0 -> 32                              */
    double          beta_slow;    /* yarn, yarn-paper: 0 -> 1                               */
    double          attn_factor;  /* m; 0: the scaling's default (see above; 1 for none,
                                     linear, ntk, dynamic, llama3)                          */
    size_t          table_len;    /* cos/sin table covers positions [0, table_len) (0: 4096);
                                     others combine it with cos/sin of a*table_len*theta
                                     (angle addition in double, corrected to the direct
                                     formula: within ~5 double ulps of cos(pos*theta))       */
    /* Hugging Face rope types (issue 15); zero fields take the defaults. */
    double          max_pos;      /* M, max_position_embeddings: dynamic (0: orig_ctx), and
                                     the factor of yarn / longrope when factor is 0          */
    size_t          seq_len;      /* dynamic, longrope: the sequence length (largest position
                                     + 1) the frequencies are for; 0: not known (see above)  */
    double          mscale;       /* yarn (DeepSeek): get_mscale coefficients of the         */
    double          mscale_all_dim; /* attention factor; used only when both are nonzero    */
    int             no_truncate;  /* yarn: 1 = HF truncate false (no floor/ceil of lo, hi)  */
    double          low_freq_factor;  /* llama3: 0 -> 1                                     */
    double          high_freq_factor; /* llama3: 0 -> 4 (must exceed low_freq_factor)      */
    const double   *short_factor; /* longrope: r/2 divisors each, finite and > 0 (required) */
    const double   *long_factor;
    const double   *freq_factors; /* optional r/2 divisors f_i of the base frequencies (any
                                     scaling but longrope), finite and > 0                  */
    const double   *freqs;        /* optional r/2 frequencies used as they are (finite, >= 0)*/
    rk_isa          isa;          /* kernel path of rk_rope_apply (RK_ISA_AUTO: see rk_isa)  */
} rk_rope_config;
/* The arrays are copied at create; rk_rope_get_config's points at the plan's copies. */

typedef struct rk_rope rk_rope;
/* Fill in the defaults of *cfg and validate it as rk_rope_create would, allocating nothing. */
RK_NODISCARD int rk_rope_resolve(rk_rope_config *cfg);
RK_NODISCARD int rk_rope_create(rk_rope **out, const rk_rope_config *cfg);
void rk_rope_destroy(rk_rope *r);                           /* NULL-safe */
const rk_rope_config *rk_rope_get_config(const rk_rope *r); /* defaults resolved (factor,
                                                               orig_ctx, max_pos, attn_factor,
                                                               betas, llama3 factors) */
const double *rk_rope_freqs(const rk_rope *r);              /* r/2 thetas after scaling */
double rk_rope_mscale(const rk_rope *r);                    /* cos/sin multiplier m      */
size_t rk_rope_bytes(const rk_rope *r);                     /* memory held by the plan   */
/* The name of a scaling as the command line and Hugging Face spell it: "none", "linear",
 * "ntk", "yarn", "yarn-paper", "dynamic", "llama3", "longrope" ("?" for others). */
const char *rk_rope_scaling_name(rk_rope_scaling s);

/* Rotate every row of `in` into `out` (same shape; out may alias in exactly, for in place).
 * in->cols must be a multiple of dim: each consecutive group of dim channels is one head, all
 * at the row's position (layout (n, heads, dim), so cos/sin are shared across heads).
 * Row t is at position pos[t] if pos != NULL, else pos0 + t. inverse != 0 undoes the
 * rotation (R^T; with an attention factor m, divides by m). */
RK_NODISCARD int rk_rope_apply(const rk_rope *r, const rk_mat *in, rk_mat *out,
                               int64_t pos0, const int64_t *pos, int inverse);
RK_NODISCARD int rk_rope_apply_d(const rk_rope *r, const rk_matd *in, rk_matd *out,
                                 int64_t pos0, const int64_t *pos, int inverse);
/* The backward of rk_rope_apply (forward direction): dx = m R^T dy for y = m R x (m: the
 * attention factor, rk_rope_mscale), so with YaRN's factor it is not the inverse rotation
 * (which divides by m). Same views, positions and aliasing rules as rk_rope_apply. */
RK_NODISCARD int rk_rope_backward(const rk_rope *r, const rk_mat *dy, rk_mat *dx, int64_t pos0,
                                  const int64_t *pos);
RK_NODISCARD int rk_rope_backward_d(const rk_rope *r, const rk_matd *dy, rk_matd *dx,
                                    int64_t pos0, const int64_t *pos);

/* A model's RoPE from its Hugging Face config.json (transformers' RotaryEmbeddingConfigMixin
 * and the _compute_*_parameters functions of modeling_rope_utils.py, read with jansson):
 *   rope_theta (or GPT-NeoX rotary_emb_base; inside rope_parameters first), default 10000;
 *   head width: qk_rope_head_dim (DeepSeek's rotated part), head_dim, or
 *     hidden_size / num_attention_heads (GPT-J: n_embd / n_head); rotary_dim =
 *     int(head width * partial_rotary_factor) (GPT-NeoX rotary_pct, GPT-J rotary_dim also read);
 *   max_position_embeddings; original_max_position_embeddings (top level first, as HF's
 *     standardize_rope_params, then inside; default max_position_embeddings);
 *   rope_parameters (newer files) or rope_scaling (older; both only if equal): rope_type (or
 *     type): default, linear, dynamic, yarn, longrope (also "su"), llama3, with HF's keys and
 *     defaults (factor, attention_factor, beta_fast, beta_slow, mscale, mscale_all_dim,
 *     truncate, short_factor, long_factor, low_freq_factor, high_freq_factor).
 * Pairing: interleaved for model_type gptj, codegen, deepseek_v2 and deepseek_v3 (unless
 * rope_interleave is false), half-split (rotate_half) otherwise. cfg.dim = the head width,
 * cfg.rotary_dim = the rotated channels (always set, so the plan keeps the file's pair count
 * even if the caller changes dim).
 * Errors name the key: RK_EFORMAT (not JSON, a key of the wrong type, a required key
 * missing), RK_EUNSUP (a rope type or a key of the rope dictionary ropekit does not know, a
 * per-layer-type dictionary), RK_EINVAL (a value out of range), RK_EIO (the file). */
typedef struct {
    rk_rope_config cfg;          /* ready for rk_rope_create (seq_len 0; set it)              */
    char    rope_type[16];       /* as HF names it: "default", "linear", "dynamic", ...       */
    size_t  head_dim;            /* the head width the file gives (= cfg.dim)                 */
    double  partial_rotary_factor;
    double *factors;             /* owned storage of cfg.short_factor / cfg.long_factor       */
} rk_rope_hf;
RK_NODISCARD int rk_rope_hf_load(rk_rope_hf *out, const char *path);
/* The same from memory (name is used in messages, e.g. the file name). */
RK_NODISCARD int rk_rope_hf_parse(rk_rope_hf *out, const char *json, size_t len,
                                  const char *name);
void rk_rope_hf_free(rk_rope_hf *h);                        /* safe on a zeroed struct */

/* ------------------------------------------------------------------------------------ */
/* Attention                                                                            */
/* ------------------------------------------------------------------------------------ */
/* out_i = sum_j w_ij v_j / sum_j w_ij over the keys query i sees.
 * Shapes: Q (n_q, d), K (n_kv, d), V (n_kv, d_v), out (n_q, d_v).
 * Causal alignment is bottom-right: query i sees keys j <= i + (n_kv - n_q) (queries are the
 * last n_q positions). Positions (for RoPE): key j at pos_offset + j, query i at
 * pos_offset + (n_kv - n_q) + i. Key padding: execute's kv_len masks keys j >= kv_len
 * (RK_ALL_KEYS: none). A query that sees no key gets a zero output row. */
typedef enum {
    RK_SOFTMAX = 1,  /* exact softmax attention                                              */
    RK_PERFORMER,    /* FAVOR+ random-feature attention (Choromanski et al.)                 */
    RK_LINEAR,       /* linear attention with elu+1 / relu features (Katharopoulos et al.)   */
    RK_RPE_FFT,      /* kernelized attention with a relative bias by FFT (Luo et al.)        */
    RK_UNIFORM,      /* every visible key weighs the same: out_i = mean of the v_j query i
                        sees (softmax of all-zero logits; a baseline with no q.k, no
                        position information)                                                 */
} rk_kind;
typedef enum { RK_ROPE_NONE = 0, RK_ROPE_QK, RK_ROPE_FEATURES } rk_rope_mode;
typedef enum { RK_KERNEL_POSITIVE = 0, RK_KERNEL_HYPERBOLIC, RK_KERNEL_TRIG } rk_kernel;
typedef enum { RK_MAP_ELU = 0, RK_MAP_RELU } rk_map;
typedef enum { RK_PROJ_ORTHOGONAL = 0, RK_PROJ_IID } rk_proj;
typedef enum { RK_NORM_CHI = 0, RK_NORM_FIXED } rk_proj_norm;
typedef enum { RK_ALIGN_BOTTOM_RIGHT = 0, RK_ALIGN_Q_START } rk_align;

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
    /* Relative position bias and encodings (issue 6; see "Position encodings and relative
     * biases" below). Kinds that do not use a field refuse it (RK_EINVAL). */
    const double  *bias;        /* RK_SOFTMAX, RK_RPE_FFT: additive bias over relative offsets,
                                   rk_bias_len(n_q, n_kv) values (NULL: none), copied at create */
    size_t         bias_len;    /* number of values at bias (must equal rk_bias_len)          */
    rk_kind        rpe_base;    /* RK_RPE_FFT feature map: RK_PERFORMER (0: default; kernel,
                                   n_features, seed, proj... as for FAVOR+) or RK_LINEAR (map) */
    int            rpe_l2norm;  /* RK_RPE_FFT: l2-normalise q and k rows first (Luo et al.)    */
    const char    *fft_wisdom;  /* RK_RPE_FFT: NULL: FFTW_ESTIMATE plans; a path: FFTW_MEASURE,
                                   wisdom imported from it (if it exists) and saved back       */
    double         xpos_scale_base; /* RK_SOFTMAX + RK_ROPE_QK + causal: xPos with scale base B
                                   (512 in the paper); 0: off                                  */
    double         xpos_gamma;  /* xPos gamma (0: 0.4)                                          */
    /* Batches of heads (rk_attn_execute_batch): q (batch, heads, n_q, d), k (batch, kv_heads,
     * n_kv, d), v (batch, kv_heads, n_kv, d_v), out (batch, heads, n_q, d_v). Query head h uses
     * key/value head h / (heads / kv_heads) (grouped-query attention; kv_heads = 1: multi-query).
     * 0: batch 1, heads 1, kv_heads = heads. The matrix calls (rk_attn_execute ...) need
     * batch = heads = 1. */
    size_t         batch;
    size_t         heads;
    size_t         kv_heads;    /* divides heads                                               */
    rk_isa         isa;         /* kernel path (RK_ISA_AUTO: see rk_isa)                       */
    /* Alignment of the queries against the keys (issue 18; "Sequence parallelism" below).
     * RK_ALIGN_BOTTOM_RIGHT (0): query i sits at key index n_kv - n_q + i, as described above.
     * RK_ALIGN_Q_START: query i sits at key index q_start + i, any q_start (negative: the
     * queries come before the first key; >= n_kv: after the last): query i sees keys
     * j <= q_start + i when causal and is at position pos_offset + q_start + i. A block of a
     * longer sequence, queries from row a and keys from row b: q_start = a - b, pos_offset =
     * b. q_start must be 0 unless align says so. Softmax (no bias), performer, linear and
     * uniform read these (RK_FIELD_ALIGN); rpe-fft and the bias convention do not. */
    rk_align       align;
    int64_t        q_start;
} rk_attn_config;

/* Config field groups: what a kind reads of rk_attn_config beyond the fields every kind takes
 * (kind, n_q, n_kv, d, d_v, causal, pos_offset, nthreads, seed: a kind that draws nothing
 * ignores the seed, so one seed can serve a sweep over kinds). A field of a group the kind
 * does not read must be left 0: rk_attn_create / rk_attn_resolve refuse it (RK_EINVAL, naming
 * the field and the kind), so no setting is ever silently ignored. */
enum {
    RK_FIELD_SCALE         = 1u << 0,  /* scale                                              */
    RK_FIELD_ROPE_QK       = 1u << 1,  /* rope = RK_ROPE_QK, rope_cfg                         */
    RK_FIELD_ROPE_FEATURES = 1u << 2,  /* rope = RK_ROPE_FEATURES, rope_cfg, rope_freq_dim_head */
    RK_FIELD_FEATURES      = 1u << 3,  /* n_features                                          */
    RK_FIELD_KERNEL        = 1u << 4,  /* kernel (FAVOR+)                                     */
    RK_FIELD_PROJ          = 1u << 5,  /* proj, proj_norm, proj_data (FAVOR+ projection)      */
    RK_FIELD_MAP           = 1u << 6,  /* map (elu+1 / relu features)                         */
    RK_FIELD_BIAS          = 1u << 7,  /* bias, bias_len                                      */
    RK_FIELD_XPOS          = 1u << 8,  /* xpos_scale_base, xpos_gamma                         */
    RK_FIELD_FFT           = 1u << 9,  /* rpe_base, rpe_l2norm, fft_wisdom                    */
    RK_FIELD_ALIGN         = 1u << 10, /* align, q_start (explicit query alignment)           */
};

/* What resolving a config tells about it (rk_attn_resolve, rk_attn_get_info). */
typedef struct {
    const char *name;         /* the kind's name: "softmax", "performer", "linear", ...        */
    unsigned    fields;       /* RK_FIELD_* groups this config may set (rpe-fft: by its base)  */
    size_t      feature_dim;  /* F of the kind's feature map (FAVOR+: m or 2m; elu+1 / relu:
                                 d; rpe-fft: its base's); 0 for kinds without one              */
    size_t      fft_len;      /* RK_RPE_FFT: the FFT length N; 0 otherwise                     */
} rk_attn_info;

/* Fill in the defaults of *cfg and validate it exactly as rk_attn_create would, without
 * allocating anything: drivers ask the library for its rules (default m, feature width, FFT
 * length) instead of restating them. info may be NULL. */
RK_NODISCARD int rk_attn_resolve(rk_attn_config *cfg, rk_attn_info *info);
/* The kinds built into the library: name (NULL for a kind that is not) and the field groups
 * it reads (rpe-fft: those of either base). */
const char *rk_attn_kind_name(rk_kind kind);
unsigned rk_attn_kind_fields(rk_kind kind);
/* The field groups this config may set: its kind's, where they depend on the config (rpe-fft:
 * on rpe_base) those of this one. 0 for an unknown kind or NULL. Allocates nothing. */
unsigned rk_attn_fields(const rk_attn_config *cfg);

typedef struct rk_attn rk_attn;
RK_NODISCARD int rk_attn_create(rk_attn **out, const rk_attn_config *cfg);
void rk_attn_destroy(rk_attn *p);                            /* NULL-safe */
const rk_attn_config *rk_attn_get_config(const rk_attn *p);  /* defaults resolved */
const rk_attn_info *rk_attn_get_info(const rk_attn *p);
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

/* A batch of heads in one call: shapes as the config's batch, heads, kv_heads (see
 * rk_attn_config), any strides (rk_tensor); kv_len: NULL (every key) or batch values, the keys
 * each sequence has. The work is spread over batch x heads x query tiles (exact softmax; the
 * other kinds over batch x heads), dynamically so causal work balances; the same bits for any
 * thread count, and the same bits as the matrix call on each head. out must not overlap an
 * input. */
RK_NODISCARD int rk_attn_execute_batch(rk_attn *p, const rk_tensor *q, const rk_tensor *k,
                                       const rk_tensor *v, rk_tensor *out, const size_t *kv_len);
RK_NODISCARD int rk_attn_execute_batch_d(rk_attn *p, const rk_tensord *q, const rk_tensord *k,
                                         const rk_tensord *v, rk_tensord *out,
                                         const size_t *kv_len);

/* Gradients. A training step is a training forward, which also saves what the backward needs
 * into a caller-owned buffer (so one plan can run many heads), then the backward:
 *
 *   float *saved = malloc(rk_attn_saved_len(p) * sizeof *saved);        (may be 0 elements)
 *   rk_attn_forward(p, &q, &k, &v, &out, kv_len, saved);                 out as execute's
 *   rk_attn_backward(p, &q, &k, &v, &out, saved, &dout, &dq, &dk, &dv, kv_len);
 *
 * dq, dk, dv are the gradients of the scalar sum(dout .* out) with respect to q, k, v, for
 * the function the forward computes: causal masks, kv_len, RoPE (dq = R^T dq_rot, with YaRN's
 * attention factor), xPos, the scale and the stabilisers are all differentiated through (the
 * stabilisers' constants cancel, so they carry no gradient). Held fixed, with no gradient:
 * the additive relative bias, the FAVOR+ projection and the RoPE frequencies. What is saved:
 * softmax: the row log-sum-exps (n_q values; nothing n x n is kept: the backward recomputes
 * the tiles, as flash attention 2 does); kinds whose backward recomputes everything save
 * nothing (rk_attn_saved_len 0; saved may then be NULL). q, k, v, out and saved must be what
 * the forward saw and wrote, with the same kv_len. Shapes: dq as q, dk as k, dv as v, dout as
 * out; the gradients are written, never read, and must not overlap each other or any input.
 * Memory: all scratch is allocated at plan creation (a plan that never runs a backward still
 * holds it; rk_attn_bytes counts it). Same bits for any thread count. Kinds without a
 * backward return RK_EUNSUP (rpe-fft). The float64 path is the reference for the float32 one.
 * RK_PERFORMER and RK_LINEAR save nothing and do not read out: the backward recomputes the
 * features (two passes in the forward's chunks: forward order for dq, reverse order with an
 * O(F d_v) state for dk, dv) and keeps four numbers per query and key row in the plan; nothing
 * n x F is stored. The float32 softmax backward needs logits within float range (the training
 * forward refuses rows whose log-sum-exp is not, RK_ENONFINITE). */
size_t rk_attn_saved_len(const rk_attn *p);
RK_NODISCARD int rk_attn_forward(rk_attn *p, const rk_mat *q, const rk_mat *k, const rk_mat *v,
                                 rk_mat *out, size_t kv_len, float *saved);
RK_NODISCARD int rk_attn_forward_d(rk_attn *p, const rk_matd *q, const rk_matd *k,
                                   const rk_matd *v, rk_matd *out, size_t kv_len, double *saved);
RK_NODISCARD int rk_attn_backward(rk_attn *p, const rk_mat *q, const rk_mat *k, const rk_mat *v,
                                  const rk_mat *out, const float *saved, const rk_mat *dout,
                                  rk_mat *dq, rk_mat *dk, rk_mat *dv, size_t kv_len);
RK_NODISCARD int rk_attn_backward_d(rk_attn *p, const rk_matd *q, const rk_matd *k,
                                    const rk_matd *v, const rk_matd *out, const double *saved,
                                    const rk_matd *dout, rk_matd *dq, rk_matd *dk, rk_matd *dv,
                                    size_t kv_len);
/* The same for a batch of heads (rk_attn_saved_len counts every head of the batch; GQA: dk, dv
 * of a key/value head sum over the query heads that share it). */
RK_NODISCARD int rk_attn_forward_batch(rk_attn *p, const rk_tensor *q, const rk_tensor *k,
                                       const rk_tensor *v, rk_tensor *out, const size_t *kv_len,
                                       float *saved);
RK_NODISCARD int rk_attn_forward_batch_d(rk_attn *p, const rk_tensord *q, const rk_tensord *k,
                                         const rk_tensord *v, rk_tensord *out,
                                         const size_t *kv_len, double *saved);
RK_NODISCARD int rk_attn_backward_batch(rk_attn *p, const rk_tensor *q, const rk_tensor *k,
                                        const rk_tensor *v, const rk_tensor *out,
                                        const float *saved, const rk_tensor *dout, rk_tensor *dq,
                                        rk_tensor *dk, rk_tensor *dv, const size_t *kv_len);
RK_NODISCARD int rk_attn_backward_batch_d(rk_attn *p, const rk_tensord *q, const rk_tensord *k,
                                          const rk_tensord *v, const rk_tensord *out,
                                          const double *saved, const rk_tensord *dout,
                                          rk_tensord *dq, rk_tensord *dk, rk_tensord *dv,
                                          const size_t *kv_len);

/* Sequence parallelism (issue 18): what ring attention and LASP-style linear attention need,
 * with no dependency on any transport (the MPI programs are mpi/; see README).
 *
 * Exact softmax: a partial result over one block of keys is the training forward's output of
 * a plan aligned with RK_ALIGN_Q_START (the block's rows at their global positions; RoPE and
 * causal masks follow) plus its saved log-sum-exp per row: the float32 path saves
 * lse = m + log2(l) (log2 domain), the float64 path ln(l) + m (natural log); a row that saw
 * no key (or only -inf bias) has lse = -inf and a zero output row. Partials over disjoint key
 * sets merge exactly (in real arithmetic) by
 *     lse = log(exp(lse_a) + exp(lse_b)),   out = exp(lse_a - lse) out_a + exp(lse_b - lse) out_b
 * (base 2 for the float path). rk_attn_merge does this in place, (out, lse) <- (out, lse) +
 * (out_b, lse_b), row by row in double, rounding once to the type: rows where lse_b = -inf
 * keep (out, lse) bit for bit; rows where lse = -inf take out_b, lse_b bit for bit; NaN in an
 * lse gives a NaN row. The merged (out, lse) is again a training forward's result: it is
 * what rk_attn_backward needs (its saved values), with the block plans, to give each block's
 * share of dq, dk, dv. Shapes: out, out_b (rows, d_v), lse, lse_b rows values; out_b may not
 * overlap out. The merge is commutative bit for bit (not associative: a fixed order of blocks
 * gives fixed bits). Error of the float32 path: lse is rounded to float, so a partial's weight
 * carries a relative error up to 2^-24 |lse| ln 2 (about 1e-6 for |lse| < 20). */
RK_NODISCARD int rk_attn_merge(rk_mat *out, float *lse, const rk_mat *out_b, const float *lse_b);
RK_NODISCARD int rk_attn_merge_d(rk_matd *out, double *lse, const rk_matd *out_b,
                                 const double *lse_b);

/* Linear kinds (RK_PERFORMER, RK_LINEAR): the key/value state of a block of keys,
 *     s = sum_j exp(-c) phi(k_j) v_j^T  (F x d_v),   z = sum_j exp(-c) phi(k_j)  (F),
 * in double, at one constant c (FAVOR+'s key stabiliser: phi(k_j) exp(-c) is the feature
 * divided by exp(c); the linear maps have c = 0). With rope = features (eq. 19) s holds the
 * rotated features (at the keys' positions pos_offset + j), z the plain ones. n counts the
 * keys; n = 0 is the empty state (s, z zero, c = -inf). Caller-owned: rk_kv_state_alloc gives
 * the shape of a plan (F = rk_attn_feature_dim, d_v) and zeroed storage. States of the same
 * plan configuration (same projection, map, rope) add: rk_kv_state_merge(a, b) sets a to
 * a + b at c = max(c_a, c_b) (each side times exp(c_side - c), in double; commutative bit for
 * bit; b may be a). */
typedef struct {
    double  *s;        /* (f, d_v) row-major                                                   */
    double  *z;        /* (f)                                                                  */
    double   c;        /* constant (log scale) of s and z; -inf when empty                     */
    uint64_t n;        /* keys folded in                                                       */
    size_t   f, d_v;
} rk_kv_state;
RK_NODISCARD int rk_kv_state_alloc(rk_kv_state *st, const rk_attn *p);
void rk_kv_state_free(rk_kv_state *st);            /* safe on a zeroed struct */
void rk_kv_state_clear(rk_kv_state *st);           /* the empty state (NULL-safe) */
RK_NODISCARD int rk_kv_state_merge(rk_kv_state *a, const rk_kv_state *b);
/* The state of keys 0 .. kv_len - 1 (RK_ALL_KEYS: n_kv) of k, v (n_kv rows) added to `init`
 * (NULL: the empty state) into *st (st may be init). Keys at positions pos_offset + j. A
 * plan with batch = heads = 1; no queries are read. */
RK_NODISCARD int rk_attn_kv_reduce(rk_attn *p, const rk_mat *k, const rk_mat *v, size_t kv_len,
                                   const rk_kv_state *init, rk_kv_state *st);
RK_NODISCARD int rk_attn_kv_reduce_d(rk_attn *p, const rk_matd *k, const rk_matd *v,
                                     size_t kv_len, const rk_kv_state *init, rk_kv_state *st);
/* Execute as if the keys of `init` came before key 0: every query sees the whole of init (the
 * keys of earlier blocks) and then the keys of k it sees by the plan's rules (causal, kv_len;
 * kv_len = 0 and a non-causal plan: init only, the bidirectional case where init already holds
 * every key). The stabiliser's prefix max starts at init's c, so the outputs are those of one
 * plan over the concatenated keys, up to rounding. final (NULL: not wanted; may be init) gets
 * init plus keys 0 .. kv_len - 1. init NULL or empty: the same bits as rk_attn_execute. A
 * plan with batch = heads = 1. No backward through the state (use the plain backward on the
 * concatenated sequence). */
RK_NODISCARD int rk_attn_execute_state(rk_attn *p, const rk_mat *q, const rk_mat *k,
                                       const rk_mat *v, rk_mat *out, size_t kv_len,
                                       const rk_kv_state *init, rk_kv_state *final);
RK_NODISCARD int rk_attn_execute_state_d(rk_attn *p, const rk_matd *q, const rk_matd *k,
                                         const rk_matd *v, rk_matd *out, size_t kv_len,
                                         const rk_kv_state *init, rk_kv_state *final);

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
/* Position encodings and relative biases                                               */
/* ------------------------------------------------------------------------------------ */
/* Relative bias (cfg.bias; RK_SOFTMAX and RK_RPE_FFT use the same convention). The logit of
 * query i and key j gains b(t) for the relative offset
 *     t = (key position) - (query position) = j - i - (n_kv - n_q)
 * (bottom-right alignment, as for causal masking and RoPE positions; t <= 0: the key is not in
 * the query's future). cfg.bias holds rk_bias_len(n_q, n_kv) = n_q + n_kv - 1 values, offset t
 * at index t + n_kv - 1: offsets -(n_kv - 1) .. n_q - 1, most negative first. Query i and key j
 * read bias[j - i + n_q - 1]. For n_q = n_kv = n: 2n - 1 values, offsets -(n-1) .. n-1; for one
 * query (decoding, n_q = 1): n_kv values, offsets -(n_kv-1) .. 0. A causal plan reads only the
 * offsets t <= 0, but the array has the full length (RK_EDIM otherwise; bias_len must equal it).
 * Values: finite or -inf. -inf gives the pair weight exactly 0 (a mask; a row whose every
 * visible key is so masked gets a zero row, like a row that sees no key); NaN and +inf are
 * RK_ENONFINITE; softmax also refuses finite values above 1e30 (RK_EINVAL: they overflow the
 * float32 logits). Unlike the causal mask and kv_len, a -inf entry does not keep a NaN or Inf
 * value of that key out of the row (0 * Inf is NaN). The values are copied at create
 * (rk_attn_get_config then points at the plan's copy).
 *
 * Softmax: logit = scale q_i . k_j + b(t) (RoPE, xPos applied to q, k first). The float32 path
 * adds float(log2(e) b) to its log2-domain logits; a zero bias gives the same bits as none.
 *
 * RK_RPE_FFT (Luo et al. 2021, "Stable, fast and accurate", eq. 10; docs/theory.md#relative-biases):
 *     out_i = sum_j c_ij phi(q_i).phi(k_j) v_j / sum_j c_ij phi(q_i).phi(k_j),
 *     c_ij = exp(b(t)) for the keys query i sees (causal: t <= 0; kv_len), 0 otherwise,
 * with the feature map of cfg.rpe_base (RK_PERFORMER: FAVOR+ kernel, n_features, seed, proj,
 * proj_norm, proj_data, scale exactly as an RK_PERFORMER plan, so the same config gives the
 * same projection; RK_LINEAR: elu+1 / relu of q, k). The sums over j are Toeplitz products
 * done with FFTW real-to-complex transforms of size N >= n_q + n_kv - 1 (the smallest even
 * 2^a 3^b 5^c 7^d), planned at create, one per column for all F (d_v + 1) columns (F = feature
 * width): O(F d_v N log N) time. Both paths compute features and FFTs in double (float32
 * FFTs were measured and rejected: a causal plain kernel at n = 65536 was off by 1e-1, double
 * by 4e-12), so the float32 path differs from the double one only in its inputs and rounded
 * outputs. rpe_l2norm divides q and k rows by their norms first (zero rows stay zero), before
 * the scale: Luo et al.'s NPRF is rpe_l2norm = 1 with scale = 1. Stabiliser (exp-type maps):
 * a query row subtracts its own max exponent; keys share one constant, the max over every key
 * any row sees (both cancel exactly). Causal: the FFT's rounding error of every row is set by
 * the norms of whole columns, future keys included, so future keys reach earlier rows at
 * rounding level (about 1e-16 relative to the largest terms) whatever the constant; exactly
 * zero influence is not possible with an FFT. Inputs must be finite (RK_ENONFINITE: an FFT
 * spreads a NaN to every row). A row's denominator that does not exceed the FFT's rounding
 * bound 16 eps log2(N) |c|_2 sum_f |phi_f(q_i)| |phi_f(k_.)|_2 (c = exp(b - max b) over the
 * offsets used) counts as zero (a product that is
 * exactly 0, e.g. relu features that never overlap, comes out of an FFT as noise): zero row,
 * as for a row that sees no key or only -inf bias entries. Not supported: RoPE, xPos,
 * the recurrent state, rk_attn_proj / rk_attn_features_d (they report no feature map).
 * FFTW: plans are made at create only, under one process-wide lock (FFTW's planner is
 * not thread-safe; planning by other code in the process at the same time is not guarded);
 * execute uses new-array execution, which is thread-safe. FFTW_ESTIMATE (default) plans
 * deterministically; with cfg.fft_wisdom, FFTW_MEASURE may pick a different algorithm on each
 * planning (results then differ in the last bits between plans unless the same wisdom is
 * reused); it never touches the caller's data (plan-owned buffers). Wisdom is process-wide
 * FFTW state; the file is written atomically (a missing file is created; an unreadable or
 * malformed one is RK_EIO / RK_EFORMAT). Threads: the d_v + 1 accumulator columns are split
 * between threads, each running its columns' FFTs feature by feature in order: the same bits
 * for any nthreads, no more than d_v + 1 threads busy in that phase. Memory, all in double:
 * features (n_q + n_kv) F, values n_kv d_v, accumulators n_q (d_v + 1), one column of length N
 * and its spectrum per thread, the bias and its spectrum; rk_attn_bytes counts them (FFTW's
 * own plan memory is not counted). */
size_t rk_bias_len(size_t n_q, size_t n_kv);      /* n_q + n_kv - 1 (0 if either is 0) */

/* T5 relative position buckets (Raffel et al. 2020; T5's _relative_position_bucket) of the
 * offset t = key - query:
 *   bidirectional: nb = num_buckets / 2 buckets per side; t > 0 adds nb; n = |t|;
 *   causal (bidirectional = 0): nb = num_buckets; n = max(-t, 0) (future keys share bucket 0);
 *   then with max_exact = nb / 2: bucket n if n < max_exact, else
 *   max_exact + (int)(log(n / max_exact) / log(max_distance / max_exact) * (nb - max_exact)),
 *   at most nb - 1, evaluated in float32 as the reference code does (so the edges match it).
 * num_buckets 0: 32; max_distance 0: 128. RK_EINVAL: max_exact < 1 (num_buckets < 4
 * bidirectional, < 2 causal) or max_distance <= max_exact. */
#define RK_T5_NUM_BUCKETS  32
#define RK_T5_MAX_DISTANCE 128
RK_NODISCARD int rk_t5_bucket(int64_t t, int bidirectional, size_t num_buckets,
                              size_t max_distance, size_t *bucket);
/* The bias of an (n_q, n_kv) plan from a T5 bucket table: bias[idx] = table[bucket(t)] for
 * every offset (rk_bias_len values). table: num_buckets values, or NULL for a stand-in of a
 * trained table, table[b] = -ln(1 + r_b) with r_b the smallest distance n of side bucket b
 * (a fixed decay; trained tables differ per head and layer). Errors as rk_t5_bucket, and
 * RK_ENONFINITE for a NaN or +inf table value. */
RK_NODISCARD int rk_bias_t5(double *bias, size_t n_q, size_t n_kv, const double *table,
                            int bidirectional, size_t num_buckets, size_t max_distance);

/* ALiBi head slopes (Press et al. 2022, the official get_slopes): n_heads a power of two:
 * slope_h = 2^(-8 (h + 1) / n_heads), h = 0 .. n_heads - 1 (8 heads: 1/2, 1/4, ..., 1/256);
 * otherwise, with p the largest power of two below n_heads, the p slopes of p heads, then the
 * first n_heads - p of the even-indexed slopes of 2p heads (2^(-4 (2k + 1) / p), k = 0, 1, ..).
 * RK_EINVAL for n_heads == 0. */
RK_NODISCARD int rk_alibi_slopes(double *slopes, size_t n_heads);
/* ALiBi bias of one head: b(t) = -slope |t| (rk_bias_len values; a causal plan reads t <= 0,
 * i.e. -slope * distance, as in the paper; the symmetric form is the usual bidirectional
 * extension). slope finite and >= 0, else RK_EINVAL. */
RK_NODISCARD int rk_bias_alibi(double *bias, size_t n_q, size_t n_kv, double slope);

/* Sinusoidal absolute encoding (RoFormer eq. 4, Vaswani et al. 2017) added to x in place (eq. 3:
 * x_i + p_i): row r at position pos0 + r gets p[2k] = sin(pos / base^(2k/d)) and
 * p[2k + 1] = cos(pos / base^(2k/d)), d = x->cols (an odd d ends with a sine). base 0: 10000
 * (else finite, > 0 and != 1: RK_EINVAL). Angles in double. */
RK_NODISCARD int rk_sinusoidal_add(rk_mat *x, int64_t pos0, double base);
RK_NODISCARD int rk_sinusoidal_add_d(rk_matd *x, int64_t pos0, double base);

/* xPos (Sun et al. 2022, torchscale XPOS; docs/theory.md#rope-scalings-and-xpos): RoPE whose pair i (of the r
 * rotated channels) is also scaled, the query at position n by zeta_i^(n/B) and the key at m by
 * zeta_i^(-m/B), so the pair's score gains zeta_i^((n - m)/B) <= 1 for n >= m (causal only):
 *     zeta_i = (2i/r + gamma) / (1 + gamma),  i = 0 .. r/2 - 1  (gamma 0: 0.4).
 * rk_xpos_zeta writes the r/2 factors (r even > 0, gamma finite > 0, else RK_EDIM / RK_EINVAL).
 * Softmax: cfg.xpos_scale_base = B > 0 with rope = RK_ROPE_QK and causal (else RK_EINVAL);
 * pairs follow rope_cfg (style, rotary_dim). The exponents are centred on the middle c of the
 * positions used (factor zeta_i^((pos - c)/B), which cancels between q and k); creation refuses
 * (RK_EOVERFLOW) a span whose largest factor would exceed e^64: |ln zeta_0| max|pos - c| / B
 * <= 64 (with B = 512, gamma = 0.4: positions within about 26000 of the centre). */
RK_NODISCARD int rk_xpos_zeta(double *zeta, size_t r, double gamma);

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

#if defined(__GNUC__)
#  pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif
#endif /* ROPEKIT_H */
