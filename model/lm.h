/* ropekit's language model (model/): a small byte-level causal transformer, trained in float32
 * through the attention library's fast kernels, with a float64 twin of every layer (and of the
 * whole model) that the tests check against finite differences.
 *
 *   model/layers.c       linear, LayerNorm, GELU, embedding, softmax cross-entropy: forward and
 *                        backward, float and double (one template, model/layers_tmpl.h)
 *   model/transformer.c  parameter layout and initialisation; the run workspace (activations,
 *                        one attention plan per layer and thread); forward and backward of the
 *                        whole model (model/transformer_tmpl.h)
 *   model/optim.c        AdamW, warmup + cosine schedule, global-norm clipping
 *   model/data.c         text (Debian's fortunes or any file) with a fixed train/validation
 *                        split, the deterministic batch order, the synthetic shift task
 *   model/train.c        the trainer: steps, FAVOR+ redraws, evaluation, checkpoints
 *   model/checkpoint.c   the versioned checkpoint file (atomic writes, validated loads)
 *
 * The architecture (GPT-2 style, pre-LayerNorm):
 *   x_0 = wte[token] (+ wpe[t] learned, or + sinusoidal(t), or nothing)
 *   per layer: x += W_o attn(W_qkv LN_1(x) + b_qkv) + b_o;  x += W_2 gelu(W_1 LN_2(x) + b_1) + b_2
 *   logits = W_out LN_f(x) + b_out;  loss = mean cross-entropy over the targets (nats)
 * Attention: H heads of width hs = C / H, causal, each (batch row, head) one call of the
 * library's rk_attn_forward / rk_attn_backward on views into the (T, 3C) qkv buffer (ld = 3C,
 * no copies on the way in). The variant (softmax, FAVOR+, linear, RoPE on q, k or on the
 * features) is an rk_attn_config template; FAVOR+ layers each draw their own projection, shared
 * by the heads (as performer-pytorch), from a seed the trainer derives from the run's seed,
 * the layer and the redraw count.
 *
 * Determinism: every reduction runs in a fixed order; parallel loops split independent outputs
 * (rows, (batch, head) pairs, columns); matrix products are lib/gemm.h's, whose bits do not
 * depend on the thread count. So the same seed gives the same bits for any thread count.
 *
 * Errors: functions return an rk status (RK_OK = 0) with the message in rk_last_error(), as the
 * library does. Memory: rk__alloc (64-byte aligned). */
#ifndef RK_LM_H
#define RK_LM_H

#include <stddef.h>
#include <stdint.h>

#include "ropekit.h"

#define LM_VOCAB 256          /* bytes                                                        */
#define LM_NAME_MAX 32        /* attention variant names                                      */

/* ---- model configuration ------------------------------------------------------------------ */
typedef enum { LM_PE_NONE = 0, LM_PE_LEARNED, LM_PE_SINUSOIDAL } lm_pe;
const char *lm_pe_name(lm_pe pe);          /* "none", "learned", "sinusoidal"                 */

typedef struct {
    size_t         ctx;        /* T: the training context (rows of the learned position table) */
    size_t         d_model;    /* C                                                            */
    size_t         n_layers;   /* L                                                            */
    size_t         n_heads;    /* H, divides C                                                 */
    size_t         d_ff;       /* MLP width (0: 4C)                                            */
    lm_pe          pe;         /* absolute position information added to the embeddings        */
    rk_attn_config attn;       /* the attention template: kind, rope, map, kernel, proj,
                                  proj_norm, n_features, rope_cfg (style, base), scale. The
                                  model sets n_q, n_kv, d, d_v, causal (1), nthreads (1), seed
                                  (per layer) and, for evaluation, the rope scaling. No bias.  */
    char           attn_name[LM_NAME_MAX];  /* the variant's name (logs, checkpoints)          */
} lm_config;

/* Fill in d_ff and check the sizes (C % H, hs even when RoPE is on, ...). */
RK_NODISCARD int lm_config_resolve(lm_config *c);

/* ---- parameters --------------------------------------------------------------------------- */
/* One float block holds every tensor, in this order (layer tensors repeated per layer);
 * weights are (out, in) row-major, PyTorch's convention. */
typedef enum {
    LM_WTE = 0,     /* (V, C) token embedding                                                  */
    LM_WPE,         /* (T, C) learned positions (only with LM_PE_LEARNED)                      */
    LM_LN1W, LM_LN1B,            /* (C)                                                        */
    LM_QKVW, LM_QKVB,            /* (3C, C), (3C): rows 0..C-1 q, C..2C-1 k, 2C..3C-1 v        */
    LM_PROJW, LM_PROJB,          /* (C, C), (C)                                                */
    LM_LN2W, LM_LN2B,            /* (C)                                                        */
    LM_FCW, LM_FCB,              /* (F, C), (F)                                                */
    LM_FCPROJW, LM_FCPROJB,      /* (C, F), (C)                                                */
    LM_LNFW, LM_LNFB,            /* (C) final LayerNorm                                        */
    LM_OUTW, LM_OUTB,            /* (V, C), (V) output projection                              */
    LM_NKINDS
} lm_kind;

typedef struct {
    char    name[24];   /* "wte", "h1.qkvw", ...                                              */
    lm_kind kind;
    int     layer;      /* -1 for the tensors outside the blocks                               */
    size_t  rows, cols; /* cols 1 for vectors                                                  */
    size_t  offset;     /* into the parameter block                                            */
    int     decay;      /* AdamW weight decay applies (matrices and embeddings)                */
} lm_tensor;

#define LM_MAX_LAYERS 64
#define LM_MAX_TENSORS (2 + 12 * LM_MAX_LAYERS + 4)

typedef struct {
    lm_config cfg;
    size_t    ntensors;
    lm_tensor tensors[LM_MAX_TENSORS];
    size_t    nparams;
} lm_layout;

RK_NODISCARD int lm_layout_make(lm_layout *lay, const lm_config *cfg);
/* Offset of a tensor (layer ignored outside the blocks); (size_t)-1 if absent (LM_WPE). */
size_t lm_offset(const lm_layout *lay, lm_kind kind, size_t layer);
/* GPT-2 initialisation from a seed: weights N(0, 0.02) (the residual projections
 * 0.02 / sqrt(2L)), wpe N(0, 0.01), LayerNorm weights 1, biases 0. Each tensor draws from its
 * own mt19937 stream keyed by (seed, kind, layer), so arms with and without wpe start from the
 * same values in every tensor they share. */
RK_NODISCARD int lm_init_params(const lm_layout *lay, unsigned long seed, float *params);

/* ---- the run workspace: activations and attention plans for one (batch, length) ------------ */
typedef struct lm_run lm_run;

/* Evaluation-time RoPE scaling (rope variants only; none for training). */
typedef struct {
    rk_rope_scaling scaling;    /* RK_SCALE_NONE / LINEAR / NTK / YARN                          */
    double          factor;     /* s = eval length / training length                            */
    double          orig_ctx;   /* YaRN: the training length                                    */
} lm_rope_scaling;

typedef struct {
    size_t batch, len;          /* B rows of T tokens (T <= cfg.ctx with learned positions)    */
    int    dbl;                 /* float64 path (the tests' reference) instead of float32      */
    int    training;            /* keep what the backward needs (rk_attn_forward); else
                                   inference (rk_attn_execute)                                  */
    int    nthreads;            /* OpenMP threads (>= 1)                                       */
    lm_rope_scaling rope;       /* zero: none                                                  */
} lm_run_config;

/* The projection seeds are per layer (FAVOR+ plans draw from them; others ignore them);
 * seeds NULL: 1 for every layer. */
RK_NODISCARD int lm_run_create(lm_run **out, const lm_layout *lay, const lm_run_config *rc,
                               const unsigned long *seeds);
void lm_run_destroy(lm_run *r);                     /* NULL-safe */
/* Rebuild the attention plans with new projection seeds (a FAVOR+ redraw). */
RK_NODISCARD int lm_run_set_seeds(lm_run *r, const unsigned long *seeds);
const lm_run_config *lm_run_get_config(const lm_run *r);
size_t lm_run_bytes(const lm_run *r);               /* activations and plans                  */

/* Loss of one forward: sum over the counted targets (nats), their count, and how many had the
 * largest logit (accuracy). Targets < 0 are not counted (and get no gradient). */
typedef struct {
    double sum;
    size_t count, correct;
} lm_loss;

/* Step-time accounting of the float path (seconds, accumulated until reset). */
typedef enum {
    LM_T_ATTN_FWD = 0,   /* rk_attn_forward / execute over every (batch row, head, layer)      */
    LM_T_ATTN_BWD,       /* rk_attn_backward (and the copy of its gradients into dqkv)         */
    LM_T_ATTN_PROJ,      /* the qkv and output projections of attention, forward + backward    */
    LM_T_MLP,            /* W_1, GELU, W_2, forward + backward                                 */
    LM_T_NORM,           /* embeddings, LayerNorms, residual adds, forward + backward           */
    LM_T_HEAD,           /* output projection, softmax cross-entropy, forward + backward        */
    LM_T_OPT,            /* gradient norm, clipping and AdamW                                  */
    LM_T_COUNT
} lm_timer;
const char *lm_timer_name(lm_timer t);
double *lm_run_timers(lm_run *r);                   /* LM_T_COUNT accumulators                */

/* tokens, targets: (B, T) row-major, tokens in [0, 256), targets in [0, 256) or < 0. The
 * forward keeps its activations for the backward (training runs). params are the layout's
 * block; grads are written (every element), never read. */
RK_NODISCARD int lm_forward_f(lm_run *r, const float *params, const int32_t *tokens,
                              const int32_t *targets, lm_loss *loss);
RK_NODISCARD int lm_backward_f(lm_run *r, const float *params, float *grads);
RK_NODISCARD int lm_forward_d(lm_run *r, const double *params, const int32_t *tokens,
                              const int32_t *targets, lm_loss *loss);
RK_NODISCARD int lm_backward_d(lm_run *r, const double *params, double *grads);

/* ---- layers (model/layers.c), each in float (_f) and double (_d) ---------------------------
 * nt: OpenMP threads; wt: scratch of C * OC elements. Rows are independent (one thread each);
 * column sums run over the rows in order. "overwritten" outputs are written, not accumulated. */
#define LM_DECLARE_LAYERS(REAL, S)                                                              \
    /* y (N, OC) = x (N, C) W^T + b; W (OC, C), b (OC) or NULL */                               \
    void lm_linear_fwd_##S(int nt, size_t N, size_t C, size_t OC, const REAL *x,                \
                           const REAL *w, const REAL *b, REAL *y, REAL *wt);                    \
    /* dx = dy W (overwritten; NULL: not wanted), dw = dy^T x, db = column sums of dy */        \
    void lm_linear_bwd_##S(int nt, size_t N, size_t C, size_t OC, const REAL *x,                \
                           const REAL *w, const REAL *dy, REAL *dx, REAL *dw, REAL *db);        \
    /* y = (x - mean) rstd w + b per row; mean, rstd (N) kept for the backward */               \
    void lm_layernorm_fwd_##S(int nt, size_t N, size_t C, const REAL *x, const REAL *w,         \
                              const REAL *b, REAL *y, REAL *mean, REAL *rstd);                  \
    /* dx += (accumulated), dw, db overwritten */                                               \
    void lm_layernorm_bwd_##S(int nt, size_t N, size_t C, const REAL *x, const REAL *w,         \
                              const REAL *mean, const REAL *rstd, const REAL *dy, REAL *dx,     \
                              REAL *dw, REAL *db);                                              \
    /* y = gelu(x) (tanh form, GPT-2) and, if dydx != NULL, gelu'(x) into dydx (may be x);     \
     * backward dx = dy dydx (dx may be dy) */                                                  \
    void lm_gelu_fwd_##S(int nt, size_t n, const REAL *x, REAL *y, REAL *dydx);                 \
    void lm_gelu_bwd_##S(int nt, size_t n, const REAL *dydx, const REAL *dy, REAL *dx);         \
    /* out (B, T, C) = wte[tok] + pos (T, C) (NULL: none) */                                    \
    void lm_embed_fwd_##S(int nt, size_t B, size_t T, size_t C, const int32_t *tok,             \
                          const REAL *wte, const REAL *pos, REAL *out);                         \
    /* dwte (V, C) overwritten with the scattered rows of dout (tokens in order); dpos (T, C)   \
     * (NULL: none) = sum over the batch rows */                                                \
    void lm_embed_bwd_##S(int nt, size_t B, size_t T, size_t C, size_t V, const int32_t *tok,   \
                          const REAL *dout, REAL *dwte, REAL *dpos);                            \
    /* logits (N, V) replaced by their softmax; nll[i] = -log p(target) (0 when target < 0);    \
     * returns the number of counted rows whose largest logit is the target (*count: counted) */\
    size_t lm_xent_fwd_##S(int nt, size_t N, size_t V, REAL *probs, const int32_t *targets,     \
                           double *nll, size_t *count);                                         \
    /* probs replaced by dlogits = scale (probs - onehot(target)); rows with target < 0: 0 */   \
    void lm_xent_bwd_##S(int nt, size_t N, size_t V, REAL *probs, const int32_t *targets,       \
                         double scale);

LM_DECLARE_LAYERS(float, f)
LM_DECLARE_LAYERS(double, d)

/* ---- optimizer (model/optim.c) ------------------------------------------------------------- */
typedef struct {
    double lr;           /* peak learning rate                                                 */
    double min_lr;       /* end of the cosine                                                  */
    size_t warmup;       /* linear warmup steps (from lr / warmup at step 1 to lr)              */
    size_t steps;        /* total steps: the cosine reaches min_lr at the last one             */
    double beta1, beta2, eps;
    double weight_decay; /* decoupled (AdamW), on the tensors with decay = 1                    */
    double clip;         /* global gradient norm limit (0: none)                               */
} lm_adamw_config;

/* Learning rate of step t = 1 .. steps: lr t / warmup for t <= warmup, then
 * min_lr + (lr - min_lr) (1 + cos(pi (t - warmup) / (steps - warmup))) / 2. */
double lm_lr_at(const lm_adamw_config *c, size_t t);
/* sqrt(sum g^2) in double over fixed chunks (the same bits for any thread count). */
double lm_grad_norm(int nt, const float *g, size_t n);
/* One AdamW step t (1-based) over every tensor of the layout: clipping scale
 * min(1, clip / norm) applied to the gradients first. Returns the norm before clipping. */
double lm_adamw_step(int nt, const lm_adamw_config *c, const lm_layout *lay, size_t t,
                     float *params, const float *grads, float *m, float *v);

/* ---- data (model/data.c) ------------------------------------------------------------------- */
/* Debian's fortunes: the text files the packages `fortunes` and `fortunes-min` install in
 * LM_FORTUNES_DIR, in this order (C-locale sorted names), concatenated. */
#define LM_FORTUNES_DIR "/usr/share/games/fortunes"
extern const char *const lm_fortunes_files[];   /* NULL-terminated */

typedef enum { LM_DATA_TEXT = 0, LM_DATA_SHIFT } lm_data_kind;

typedef struct {
    lm_data_kind kind;
    /* text: bytes [0, n_train) train, [n_train, n) validation (n_train = floor(n * (1 -
     * val_frac)) with val_frac = LM_VAL_FRAC) */
    uint8_t *bytes;
    size_t   n, n_train;
    uint64_t hash;          /* FNV-1a 64 of the bytes: identifies the data in checkpoints   */
    char     desc[256];     /* "fortunes (43 files, 2576674 bytes)", "FILE (n bytes)"       */
    /* shift task: tokens uniform in [0, alphabet); target at t is the token shift places
     * back (no target for t < shift) */
    size_t   shift, alphabet;
} lm_data;

#define LM_VAL_FRAC 0.1

RK_NODISCARD int lm_data_load_file(lm_data *d, const char *path);
RK_NODISCARD int lm_data_load_fortunes(lm_data *d, const char *dir);   /* dir NULL: default */
RK_NODISCARD int lm_data_shift(lm_data *d, size_t shift, size_t alphabet);
void lm_data_free(lm_data *d);                                          /* zeroed-safe */

/* The training batch of a step: row b of step s is drawn from (seed, s, b) alone (text: a
 * window start uniform over the training bytes; shift: fresh tokens), so the data order is a
 * function of the seed and the step (nothing to save, the same for every arm). */
void lm_data_train_batch(const lm_data *d, unsigned long seed, uint64_t step, size_t B,
                         size_t T, int32_t *tokens, int32_t *targets);
/* Validation: windows of T targets. Text: window w holds bytes [n_train + w T, .. + T + 1)
 * (consecutive, non-overlapping) of the validation part; shift: sequences from a stream no
 * training seed uses. lm_data_val_windows: how many fit in max_tokens targets (at least 1;
 * text: at most the validation part holds). */
size_t lm_data_val_windows(const lm_data *d, size_t T, size_t max_tokens);
/* Rows w0 .. w0 + B - 1 (rows past nwin get no targets). */
void lm_data_val_batch(const lm_data *d, size_t T, size_t w0, size_t nwin, size_t B,
                       int32_t *tokens, int32_t *targets);

/* splitmix64: the mixer behind every derived seed. */
uint64_t lm_mix64(uint64_t x);

/* ---- trainer (model/train.c) ---------------------------------------------------------------- */
typedef struct {
    unsigned long   seed;       /* initialisation, data order, FAVOR+ draws (>= 1)             */
    size_t          batch;      /* B sequences of cfg.ctx tokens per step                       */
    lm_adamw_config opt;
    size_t          redraw;     /* FAVOR+: a new projection every `redraw` steps (0: never)     */
} lm_train_config;

typedef struct {
    lm_layout       lay;
    lm_train_config tc;
    const lm_data  *data;
    int             nthreads;
    float          *params, *grads, *m, *v;
    size_t          step;         /* optimizer steps done                                      */
    double          loss_sum;     /* train loss summed since the last lm_trainer_take_loss      */
    size_t          loss_n;
    double          last_norm;    /* gradient norm of the last step                             */
    lm_run         *run;          /* training run (batch, ctx)                                  */
    lm_run         *eval_run;     /* the last evaluation's run (kept for the next one)          */
    unsigned long  *seeds;        /* current projection seed per layer                          */
    size_t          redraw_index; /* seeds drawn for this redraw count                          */
    int32_t        *tokens, *targets;
} lm_trainer;

/* Projection seed of a layer after `index` redraws (never 0). */
unsigned long lm_proj_seed(unsigned long seed, size_t layer, size_t index);

/* A fresh model (initialised from tc->seed) ready for step 1. The variant must have a backward
 * (RK_EUNSUP otherwise, with its name). */
RK_NODISCARD int lm_trainer_create(lm_trainer **out, const lm_config *cfg,
                                   const lm_train_config *tc, const lm_data *data, int nthreads);
void lm_trainer_destroy(lm_trainer *t);                                  /* NULL-safe */
/* One optimizer step (forward, backward, clip, AdamW); *loss: its training loss (nats). */
RK_NODISCARD int lm_trainer_step(lm_trainer *t, double *loss);
/* Mean training loss since the last call (NaN if no step), then reset. */
double lm_trainer_take_loss(lm_trainer *t);
/* Validation loss of the current parameters at length len (<= ctx with learned positions),
 * with a RoPE scaling (NULL: none), over lm_data_val_windows(len, max_tokens) windows in
 * batches of `batch` rows. */
RK_NODISCARD int lm_trainer_eval(lm_trainer *t, size_t len, const lm_rope_scaling *scaling,
                                 size_t max_tokens, size_t batch, lm_loss *out);
/* Step-time accumulators of the training run (lm_timer). */
double *lm_trainer_timers(lm_trainer *t);

/* ---- checkpoints (model/checkpoint.c) -------------------------------------------------------
 * Version 1, little-endian: magic "RKLMCKPT", u32 version, u32 header bytes, the header (model
 * config, attention template, training config, data identity, step, train-loss accumulator),
 * u64 parameter count, params, AdamW m, v (float32 each), u64 FNV-1a of everything before.
 * Written through rk__out (a temporary file, fsync, rename: a reader sees the old checkpoint or
 * the new one). A load checks the magic, version, sizes, checksum and config consistency. */
#define LM_CKPT_VERSION 1
RK_NODISCARD int lm_trainer_save(const lm_trainer *t, const char *path);
/* Read a checkpoint's configuration only (for --resume: to compare with what was asked). */
typedef struct {
    lm_config       cfg;
    lm_train_config tc;
    uint64_t        data_hash, data_len;
    uint32_t        data_kind;
    uint64_t        shift, alphabet;
    uint64_t        step;
} lm_ckpt_info;
RK_NODISCARD int lm_ckpt_peek(const char *path, lm_ckpt_info *info);
/* Restore a trainer from a checkpoint: the trainer must have been created with the same
 * configuration and data (RK_EINVAL naming the first field that differs). */
RK_NODISCARD int lm_trainer_load(lm_trainer *t, const char *path);
/* The first difference between two configurations as "field: a vs b" (0 if equal). */
int lm_ckpt_diff(const lm_ckpt_info *a, const lm_ckpt_info *b, char *buf, size_t len);
/* The configuration of a trainer, as a checkpoint records it. */
void lm_trainer_info(const lm_trainer *t, lm_ckpt_info *info);

#endif
