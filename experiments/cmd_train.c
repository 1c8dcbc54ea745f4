/* ropekit train: a byte-level transformer language model (model/lm.h) trained on a CPU through
 * the attention library's fast kernels, and the paper's Figure 3 (right) with error bars.
 *
 *   ropekit train [--variant V] [--pe P] [--data FILE | --task shift:K] [--steps N] ...
 *       one run: a progress line per evaluation (step, train loss, validation bits per
 *       character, tokens/s, ETA), the evaluations in --out (TSV), checkpoints in --ckpt every
 *       --ckpt-every steps (atomic), --resume continuing bit for bit; at the end the throughput
 *       and the share of step time per part (attention forward / backward, projections, MLP,
 *       norms and embeddings, output head, optimizer).
 *   ropekit train --compare A,B,... --seeds S --dir DIR [...]
 *       every arm with every seed (the same data order, initialisation and budget per seed);
 *       DIR/runs.tsv (validation bpc per arm, seed, step), DIR/ckpt/ (one checkpoint per run),
 *       DIR/extrapolation.tsv (each final model at 1x, 2x, 4x, 8x the training length with the
 *       RoPE scalings none / linear / ntk / yarn), DIR/timing.tsv, and the summaries
 *       curves.tsv, paired.tsv, paired_seeds.tsv, claims.tsv, extrapolation_summary.tsv
 *       (experiments/train_report.c). --resume continues all of it.
 *   ropekit train --eval CKPT [--lengths L] [--scalings S] [--out FILE]
 *       the length extrapolation of one checkpoint.
 *
 * Arms: a variant name (experiments/variant.c), optionally ":none", ":learned" or
 * ":sinusoidal"; without it an arm without RoPE gets learned absolute positions (the paper's
 * baseline) and a RoPE arm none (--pe changes the default for every arm). */
#include "cli.h"
#include "machine.h"
#include "progress.h"
#include "sweep.h"
#include "table.h"
#include "train_report.h"
#include "variant.h"
#include "../model/lm.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_LENGTHS 8
#define NSCALINGS 4

static const cli_opt opts[] = {
    { "variant", "NAME", "attention variant (default softmax-rope; see ropekit attend --help)" },
    { "pe", "none|learned|sinusoidal", "absolute positions added to the embeddings (default:\n"
      "learned for a variant without RoPE, none with RoPE)" },
    { "data", "FILE", "train on this text file (default: Debian's fortunes, see README)" },
    { "task", "shift:K[:A]", "the synthetic task instead of text: output the token K places\n"
      "back (A symbols, default 16)" },
    { "layers", "L", "transformer blocks (default 2)" },
    { "d-model", "C", "model width (default 64)" },
    { "heads", "H", "attention heads, dividing C (default 2)" },
    { "d-ff", "F", "MLP width (default 4C)" },
    { "ctx", "T", "training length (default 64)" },
    { "features", "M", "FAVOR+ random features (default 64)" },
    { "rope-config", "FILE", "the RoPE arms rotate with a Hugging Face config.json's rope_theta,\n"
      "partial_rotary_factor and pairing (its head width must be d-model / heads; a\n"
      "rope_scaling is refused: evaluate longer lengths with --scalings)" },
    { "steps", "N", "optimizer steps (default 2000; quick 400)" },
    { "batch", "B", "sequences per step (default 16)" },
    { "lr", "X", "peak learning rate (default 0.002)" },
    { "min-lr", "X", "learning rate at the end of the cosine (default lr / 10)" },
    { "warmup", "W", "linear warmup steps (default N / 20)" },
    { "weight-decay", "X", "AdamW decoupled weight decay of matrices (default 0.1)" },
    { "beta2", "X", "AdamW beta2 (default 0.99; beta1 is 0.9)" },
    { "clip", "X", "global gradient norm limit, 0: none (default 1)" },
    { "redraw", "K", "FAVOR+: a new projection every K steps, 0: never (default 1000)" },
    { "seed", "S", "initialisation, data order and FAVOR+ draws, >= 1 (default 1); with\n"
      "--compare the first of the seeds" },
    { "eval-every", "E", "validation every E steps (default N / 10; quick 50)" },
    { "val-tokens", "V", "validation targets per evaluation (default 16384; quick 4096)" },
    { "ckpt", "FILE", "checkpoint file (one run)" },
    { "ckpt-every", "K", "write the checkpoint every K steps (default E)" },
    { "resume", NULL, "continue from the checkpoint (one run: --ckpt; --compare: DIR)" },
    { "out", "FILE", "the evaluations as TSV (one run, --eval)" },
    { "threads", "N", "OpenMP threads (default: all; results do not depend on it)" },
    { "quick", NULL, "the settings of make paper: 400 steps, evaluations every 50 steps on 4096\n"
      "targets (the five arms with 4 seeds: 4 minutes on 2 cores)" },
    { "compare", "ARMS", "comma list of arms VARIANT[:PE] (see below)" },
    { "seeds", "S", "seeds per arm (default 4)" },
    { "jobs", "J", "runs at a time, each in its own process with threads / J threads (default:\n"
      "one per thread; results do not depend on it)" },
    { "dir", "DIR", "output directory of --compare" },
    { "lengths", "LIST", "evaluation lengths as multiples of T (default 1,2,4,8)" },
    { "scalings", "LIST", "RoPE scalings at evaluation: none,linear,ntk,yarn (default all)" },
    { "report-step", "N", "the step of the verdicts (an evaluated step; default N)" },
    { "level", "P", "confidence level of the intervals (default 0.95)" },
    { "eval", "CKPT", "length extrapolation of a checkpoint (with --data if it was trained on\n"
      "a file)" },
};

static const cli_spec spec = {
    "train", "[options] | --compare ARMS --seeds S --dir DIR [options] | --eval CKPT",
    "Train a byte-level transformer language model (pre-LayerNorm blocks of multi-head\n"
    "causal attention and a GELU MLP, AdamW with warmup and cosine decay, gradient clipping)\n"
    "through the attention library, deterministically: the same seed gives the same bits for\n"
    "any thread count, and --resume continues a checkpoint bit for bit. Data: Debian's\n"
    "fortunes (or --data FILE), the first 90% of the bytes for training and the last 10%\n"
    "for validation. --compare runs the paper's Figure 3 (right) experiment with confidence\n"
    "intervals over seeds and the paired difference RoPE minus NoPE; see the README.",
    opts, sizeof opts / sizeof opts[0],
};

static const char *const pe_names[] = { "none", "learned", "sinusoidal", NULL };
static const char *const scaling_names[NSCALINGS] = { "none", "linear", "ntk", "yarn" };
static const rk_rope_scaling scaling_kinds[NSCALINGS] = { RK_SCALE_NONE, RK_SCALE_LINEAR,
                                                          RK_SCALE_NTK, RK_SCALE_YARN };

typedef struct {
    /* model */
    int           pe;            /* -1: the variant's default                                 */
    size_t        layers, d_model, heads, d_ff, ctx, features;
    const char   *rope_file;     /* --rope-config: the RoPE arms' base, rotated width, pairing */
    int           rope_set;      /* the three below replace the variant's (file or checkpoint) */
    rk_rope_style rope_style;
    double        rope_base;
    size_t        rope_rotary;   /* rotated channels of a head (<= d_model / heads)           */
    /* training */
    lm_train_config tc;
    /* data */
    const char   *data;
    int           task;
    size_t        shift, alphabet;
    /* evaluation, files */
    size_t        eval_every, val_tokens, ckpt_every;
    const char   *ckpt, *out, *dir, *eval;
    int           resume, threads;
    /* compare */
    train_arm     arms[TRAIN_MAX_ARMS];
    size_t        narms, nseeds, report_step, jobs;
    unsigned long seeds[TRAIN_MAX_SEEDS];
    size_t        lengths[MAX_LENGTHS], nlengths;
    int           scalings[NSCALINGS];
    size_t        nscalings;
    double        level;
} settings;

/* ---- resources released by cli_die and cli_finish ------------------------------------------ */
/* The tables of --compare in DIR: runs.tsv, extrapolation.tsv, timing.tsv. */
enum { TAB_RUNS, TAB_EXT, TAB_TIMING, NTABLES };

typedef struct {
    lm_data     data;
    lm_trainer *trainer;
    table       tab[NTABLES], out;
    train_tsv  *tsv;
} resources;

static void free_resources(void *p)
{
    resources *r = p;
    lm_trainer_destroy(r->trainer);
    r->trainer = NULL;
    lm_data_free(&r->data);
    for (int k = 0; k < NTABLES; k++) table_close(&r->tab[k]);
    table_close(&r->out);
    train_tsv_abort(r->tsv);
    r->tsv = NULL;
}
static void restore_signals(void *p) { (void)p; progress_restore_signals(); }

/* ---- options ------------------------------------------------------------------------------ */

static size_t get_size(cli_ctx *c, const char *name, size_t dflt, size_t lo, size_t hi)
{
    return (size_t)cli_get_integer(c, name, (long long)dflt, (long long)lo, (long long)hi);
}

/* "softmax", "softmax:none" -> an arm; dies on an unknown variant or encoding. */
static void parse_arm(cli_ctx *c, const char *opt, char *item, int pe_default, train_arm *a)
{
    memset(a, 0, sizeof *a);
    char *colon = strchr(item, ':');
    int pe = pe_default;
    if (colon) {
        *colon = '\0';
        pe = -1;
        for (int i = 0; pe_names[i]; i++)
            if (!strcmp(colon + 1, pe_names[i])) pe = i;
        if (pe < 0)
            cli_die(c, "--%s: unknown position encoding '%s' in arm '%s' (expected: none, learned, "
                    "sinusoidal)", opt, colon + 1, item);
    }
    const variant *v = variant_find(item);
    if (!v) {
        char list[1024];
        cli_die(c, "--%s: unknown variant '%s' (expected: %s)", opt, item,
                variant_names(list, sizeof list));
    }
    if (v->bias != VARIANT_BIAS_NONE)
        cli_die(c, "--%s: variant '%s' carries a relative bias table: it cannot be trained here",
                opt, item);
    if (pe < 0) pe = v->rope != RK_ROPE_NONE ? 0 : 1;
    snprintf(a->variant, sizeof a->variant, "%s", v->name);
    if (colon) snprintf(a->label, sizeof a->label, "%s:%s", v->name, pe_names[pe]);
    else snprintf(a->label, sizeof a->label, "%s", v->name);
    a->pe = pe;
    a->kind = v->kind;
    a->rope = v->rope;
    a->map = v->map;
}

/* --rope-config: what a trained model's RoPE takes from a Hugging Face config.json. Only the
 * unscaled rotation (rope_theta, partial_rotary_factor, the pairing of its model_type): a
 * scaling is for running a trained model past its length, which --scalings evaluates; the
 * checkpoint records base, rotated width and pairing, so --resume and --eval rebuild it. */
static void rope_file_settings(cli_ctx *c, settings *s)
{
    rk_rope_hf h;
    if (rk_rope_hf_load(&h, s->rope_file)) cli_die(c, "--rope-config: %s", rk_last_error());
    rk_rope_config r = h.cfg;
    const size_t hs = s->d_model / s->heads;
    const char *why = NULL;
    if (r.scaling != RK_SCALE_NONE) why = rk_rope_scaling_name(r.scaling);
    else if (r.freqs || r.freq_factors) why = "per-pair frequencies";
    rk_rope_hf_free(&h);
    if (why)
        cli_die(c, "--rope-config: %s scales its rotation (%s): a model here trains with the "
                "unscaled RoPE; evaluate longer lengths with --scalings", s->rope_file, why);
    if (r.dim != hs)
        cli_die(c, "--rope-config: %s gives a head width of %zu, but the model's is --d-model / "
                "--heads = %zu / %zu = %zu", s->rope_file, r.dim, s->d_model, s->heads, hs);
    s->rope_set = 1;
    s->rope_style = r.style;
    s->rope_base = r.base ? r.base : 10000.0;
    s->rope_rotary = r.rotary_dim ? r.rotary_dim : hs;
}

static void parse_settings(cli_ctx *c, settings *s)
{
    memset(s, 0, sizeof *s);
    const int quick = cli_flag(c, "quick");
    s->eval = cli_get(c, "eval");
    const char *cmp = cli_get(c, "compare");
    if (s->eval) {
        /* the checkpoint fixes the model and its training */
        static const char *const fixed[] = {
            "variant", "pe", "task", "layers", "d-model", "heads", "d-ff", "ctx", "features",
            "steps", "batch", "lr", "min-lr", "warmup", "weight-decay", "beta2", "clip", "redraw",
            "seed", "eval-every", "ckpt", "ckpt-every", "resume", "quick", "compare", "seeds",
            "jobs", "report-step", "level", "rope-config", NULL,
        };
        for (int i = 0; fixed[i]; i++)
            if (cli_get(c, fixed[i]))
                cli_die(c, "--%s does not apply to --eval (the checkpoint fixes the model and its "
                        "training)", fixed[i]);
    }
    if (cmp && cli_get(c, "variant"))
        cli_die(c, "--variant and --compare exclude each other (name the arms in --compare)");
    if (cmp && !cli_get(c, "dir")) cli_die(c, "--compare needs --dir DIR (the output directory)");
    if (!cmp && cli_get(c, "dir")) cli_die(c, "--dir is the output of --compare");
    if (cmp && (cli_get(c, "ckpt") || cli_get(c, "out")))
        cli_die(c, "--compare writes its tables and checkpoints into --dir (no --ckpt, --out)");
    if (!cmp && (cli_get(c, "seeds") || cli_get(c, "report-step") || cli_get(c, "jobs")))
        cli_die(c, "--seeds, --jobs and --report-step belong to --compare");
    if (!cmp && !s->eval && (cli_get(c, "lengths") || cli_get(c, "scalings")))
        cli_die(c, "--lengths and --scalings belong to --compare and --eval");
    if (!cmp && !s->eval && cli_flag(c, "resume") && !cli_get(c, "ckpt"))
        cli_die(c, "--resume needs --ckpt FILE (the checkpoint to continue)");

    s->pe = cli_get_choice(c, "pe", "position encoding", pe_names, -1);
    s->layers = get_size(c, "layers", 2, 1, LM_MAX_LAYERS);
    s->d_model = get_size(c, "d-model", 64, 1, 4096);
    s->heads = get_size(c, "heads", 2, 1, 4096);
    if (s->d_model % s->heads)
        cli_die(c, "--d-model %zu is not a multiple of --heads %zu", s->d_model, s->heads);
    s->d_ff = get_size(c, "d-ff", 4 * s->d_model, 1, 65536);
    s->ctx = get_size(c, "ctx", 64, 2, 65536);
    s->features = get_size(c, "features", 64, 1, 65536);
    if ((s->rope_file = cli_get(c, "rope-config"))) rope_file_settings(c, s);
    lm_train_config *tc = &s->tc;
    tc->opt.steps = get_size(c, "steps", quick ? 400 : 2000, 1, (size_t)1 << 40);
    tc->batch = get_size(c, "batch", 16, 1, 1 << 20);
    tc->opt.lr = cli_get_double(c, "lr", 2e-3, 0.0, 10.0, CLI_GT_LO);
    tc->opt.min_lr = cli_get_double(c, "min-lr", tc->opt.lr / 10.0, 0.0, tc->opt.lr, 0);
    tc->opt.warmup = get_size(c, "warmup", tc->opt.steps / 20, 0, tc->opt.steps);
    tc->opt.weight_decay = cli_get_double(c, "weight-decay", 0.1, 0.0, 10.0, 0);
    tc->opt.beta1 = 0.9;
    tc->opt.beta2 = cli_get_double(c, "beta2", 0.99, 0.0, 1.0, CLI_LT_HI);
    tc->opt.eps = 1e-8;
    tc->opt.clip = cli_get_double(c, "clip", 1.0, 0.0, 1e12, 0);
    tc->redraw = get_size(c, "redraw", 1000, 0, (size_t)1 << 40);
    tc->seed = (unsigned long)cli_get_integer(c, "seed", 1, 1, 0xFFFFFFFFLL);

    s->data = cli_get(c, "data");
    const char *task = cli_get(c, "task");
    if (task && s->data) cli_die(c, "--task and --data exclude each other");
    if (task) {
        char *end;
        if (strncmp(task, "shift:", 6) != 0)
            cli_die(c, "--task: unknown task '%s' (expected shift:K or shift:K:A)", task);
        errno = 0;
        unsigned long long k = strtoull(task + 6, &end, 10), a = 16;
        if (end == task + 6 || errno) cli_die(c, "--task: bad shift in '%s'", task);
        if (*end == ':') {
            char *e2;
            a = strtoull(end + 1, &e2, 10);
            if (e2 == end + 1 || *e2 || a < 2 || a > LM_VOCAB)
                cli_die(c, "--task: the alphabet in '%s' must be 2 .. %d", task, LM_VOCAB);
        } else if (*end) {
            cli_die(c, "--task: bad task '%s' (expected shift:K or shift:K:A)", task);
        }
        if (k >= s->ctx) cli_die(c, "--task: the shift %llu must be below --ctx %zu", k, s->ctx);
        s->task = 1;
        s->shift = (size_t)k;
        s->alphabet = (size_t)a;
    }
    s->eval_every = get_size(c, "eval-every", quick ? 50 : tc->opt.steps / 10 ? tc->opt.steps / 10
                                                                             : 1, 1, tc->opt.steps);
    s->val_tokens = get_size(c, "val-tokens", quick ? 4096 : 16384, 1, (size_t)1 << 32);
    s->ckpt_every = get_size(c, "ckpt-every", s->eval_every, 1, (size_t)1 << 40);
    s->ckpt = cli_get(c, "ckpt");
    s->out = cli_get(c, "out");
    s->dir = cli_get(c, "dir");
    s->resume = cli_flag(c, "resume");
    s->threads = (int)cli_get_integer(c, "threads", 0, 1, 4096);
    s->level = cli_get_double(c, "level", 0.95, 0.0, 1.0, CLI_GT_LO | CLI_LT_HI);

    if (!cmp && !s->eval) {
        static char vbuf[64];
        const char *v = cli_get(c, "variant");
        snprintf(vbuf, sizeof vbuf, "%s", v ? v : "softmax-rope");
        if (strchr(vbuf, ':')) cli_die(c, "--variant: give the encoding with --pe");
        parse_arm(c, "variant", vbuf, s->pe, &s->arms[0]);
        s->narms = 1;
    }
    if (cmp) {
        static char abuf[1024];
        if (strlen(cmp) >= sizeof abuf) cli_die(c, "--compare: list too long");
        strcpy(abuf, cmp);
        char *item[TRAIN_MAX_ARMS];
        s->narms = cli_split_list(c, "compare", abuf, item, TRAIN_MAX_ARMS);
        for (size_t i = 0; i < s->narms; i++) {
            parse_arm(c, "compare", item[i], s->pe, &s->arms[i]);
            for (size_t j = 0; j < i; j++)
                if (!strcmp(s->arms[j].label, s->arms[i].label))
                    cli_die(c, "--compare: arm '%s' given twice", s->arms[i].label);
        }
        train_pair_arms(s->arms, s->narms);
        s->nseeds = get_size(c, "seeds", 4, 1, TRAIN_MAX_SEEDS);
        s->jobs = get_size(c, "jobs", 0, 1, TRAIN_MAX_ARMS * TRAIN_MAX_SEEDS);
        for (size_t i = 0; i < s->nseeds; i++) s->seeds[i] = tc->seed + i;
        s->report_step = get_size(c, "report-step", tc->opt.steps, 1, tc->opt.steps);
        if (s->report_step % s->eval_every && s->report_step != tc->opt.steps)
            cli_die(c, "--report-step %zu is not an evaluated step (a multiple of --eval-every %zu, "
                    "or the last step)", s->report_step, s->eval_every);
    }
    if (s->rope_file) {     /* it applies to the RoPE arms: some arm must have RoPE */
        size_t with = 0;
        for (size_t i = 0; i < s->narms; i++) with += s->arms[i].rope != RK_ROPE_NONE;
        if (!with && s->narms == 1)
            cli_die(c, "--rope-config: variant '%s' has no RoPE, so the file would change nothing",
                    s->arms[0].variant);
        if (!with)
            cli_die(c, "--rope-config: no arm of --compare has RoPE, so the file would change "
                    "nothing");
    }
    if (cmp || s->eval) {
        static char lbuf[256], sbuf[256];
        const char *ls = cli_get(c, "lengths");
        snprintf(lbuf, sizeof lbuf, "%s", ls ? ls : "1,2,4,8");
        char *item[MAX_LENGTHS];
        s->nlengths = cli_split_list(c, "lengths", lbuf, item, MAX_LENGTHS);
        for (size_t i = 0; i < s->nlengths; i++) {
            long long k = cli_integer(c, "--lengths", item[i]);
            if (k < 1 || k > 1024) cli_die(c, "--lengths: %lld is not a multiple 1 .. 1024", k);
            for (size_t j = 0; j < i; j++)
                if (s->lengths[j] == (size_t)k) cli_die(c, "--lengths: %lld given twice", k);
            s->lengths[i] = (size_t)k;
        }
        const char *ss = cli_get(c, "scalings");
        snprintf(sbuf, sizeof sbuf, "%s", ss ? ss : "none,linear,ntk,yarn");
        char *sit[NSCALINGS];
        s->nscalings = cli_split_list(c, "scalings", sbuf, sit, NSCALINGS);
        for (size_t i = 0; i < s->nscalings; i++) {
            int k = -1;
            for (int j = 0; j < NSCALINGS; j++)
                if (!strcmp(sit[i], scaling_names[j])) k = j;
            if (k < 0)
                cli_die(c, "--scalings: unknown scaling '%s' (expected: none, linear, ntk, yarn)",
                        sit[i]);
            for (size_t j = 0; j < i; j++)
                if (s->scalings[j] == k) cli_die(c, "--scalings: '%s' given twice", sit[i]);
            s->scalings[i] = k;
        }
    }
}

/* The model configuration of an arm. */
static void arm_config(cli_ctx *c, const settings *s, const train_arm *a, lm_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->ctx = s->ctx;
    cfg->d_model = s->d_model;
    cfg->n_layers = s->layers;
    cfg->n_heads = s->heads;
    cfg->d_ff = s->d_ff;
    cfg->pe = (lm_pe)a->pe;
    snprintf(cfg->attn_name, sizeof cfg->attn_name, "%s", a->variant);
    const size_t hs = s->d_model / s->heads;
    int rc = variant_config(a->variant, s->ctx, s->ctx, hs, hs, 1, s->features, 1, &cfg->attn);
    if (rc) cli_die_rk(c, rc < 0 ? RK_EINVAL : rc, a->variant);
    variant_release();
    rk_attn_config *at = &cfg->attn;
    if (s->rope_set && at->rope != RK_ROPE_NONE) {
        /* eq. 19 rotates the features, not the head: a partial rotation of the head has no
         * meaning there, only the base and the pairing carry over */
        if (s->rope_file && at->rope == RK_ROPE_FEATURES && s->rope_rotary != hs)
            cli_die(c, "--rope-config: %s rotates %zu of %zu channels of a head; arm '%s' "
                    "rotates the FAVOR+ features (eq. 19), where that has no meaning",
                    s->rope_file, s->rope_rotary, hs, a->label);
        at->rope_cfg.style = s->rope_style;
        at->rope_cfg.base = s->rope_base;
        if (at->rope == RK_ROPE_QK) at->rope_cfg.rotary_dim = s->rope_rotary;
    }
}

static void load_data(cli_ctx *c, const settings *s, lm_data *d)
{
    int rc;
    if (s->task) rc = lm_data_shift(d, s->shift, s->alphabet);
    else if (s->data) rc = lm_data_load_file(d, s->data);
    else rc = lm_data_load_fortunes(d, NULL);
    if (rc) cli_die(c, "%s%s", s->data ? "--data: " : "", rk_last_error());
}

/* The trainer of an arm and seed (dies with the library's message). */
static lm_trainer *make_trainer(cli_ctx *c, const settings *s, const train_arm *a,
                                unsigned long seed, const lm_data *d, int threads)
{
    lm_config cfg;
    arm_config(c, s, a, &cfg);
    lm_train_config tc = s->tc;
    tc.seed = seed;
    lm_trainer *t = NULL;
    int rc = lm_trainer_create(&t, &cfg, &tc, d, threads);
    if (rc) cli_die(c, "%s", rk_last_error());
    return t;
}

/* Everything that determines the rows. */
static void config_line(const settings *s, const lm_data *d, char *buf, size_t len)
{
    size_t n = (size_t)snprintf(buf, len, "ropekit train v1 ");
    if (s->narms > 1 || s->dir) {
        n += (size_t)snprintf(buf + n, n < len ? len - n : 0, "arms=");
        for (size_t i = 0; i < s->narms && n < len; i++)
            n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? "," : "", s->arms[i].label);
        if (n < len)
            n += (size_t)snprintf(buf + n, len - n, " seeds=%lu..%lu", s->seeds[0],
                                  s->seeds[s->nseeds - 1]);
    } else {
        n += (size_t)snprintf(buf + n, n < len ? len - n : 0, "variant=%s pe=%s seed=%lu",
                              s->arms[0].variant, pe_names[s->arms[0].pe], s->tc.seed);
    }
    const lm_train_config *tc = &s->tc;
    if (n < len)
        snprintf(buf + n, len - n,
                 " layers=%zu d_model=%zu heads=%zu d_ff=%zu ctx=%zu features=%zu steps=%zu "
                 "batch=%zu lr=%g min_lr=%g warmup=%zu weight_decay=%g beta2=%g clip=%g "
                 "redraw=%zu eval_every=%zu val_tokens=%zu data=%s data_fnv1a=%016llx",
                 s->layers, s->d_model, s->heads, s->d_ff, s->ctx, s->features, tc->opt.steps,
                 tc->batch, tc->opt.lr, tc->opt.min_lr, tc->opt.warmup, tc->opt.weight_decay,
                 tc->opt.beta2, tc->opt.clip, tc->redraw, s->eval_every, s->val_tokens, d->desc,
                 (unsigned long long)d->hash);
    n = strlen(buf);
    if (s->rope_file && n < len)      /* only then: tables from before the option still match */
        snprintf(buf + n, len - n, " rope_config=%s rope_base=%g rope_rotary_dim=%zu rope_style=%s",
                 s->rope_file, s->rope_base, s->rope_rotary,
                 s->rope_style == RK_ROPE_HALF ? "half" : "interleaved");
    for (char *p = buf; *p; p++)
        if (*p == '\t' || *p == '\n') *p = ' ';
}

/* ---- the training loop -------------------------------------------------------------------- */
typedef struct {
    table      *rows;      /* evaluations (NULL: none)                                       */
    const char *key;       /* the row key before the step ("" or "arm\tseed\t")              */
    const char *extra;     /* fields between the step and train_loss ("" or "variant\tpe\t") */
    const char *ckpt;      /* checkpoint path or NULL                                        */
    const char *label;     /* for the progress lines                                         */
    double      pr_base;   /* the progress line's position at step 0 ...                     */
    double      pr_scale;  /* ... and per step                                               */
    double      step_s;    /* out: seconds in training steps (this process)                 */
    size_t      steps_run; /* out: steps run in this process                                 */
} loop_io;

static const char *fnum(char *b, double x)
{
    if (isnan(x)) return "nan";
    snprintf(b, 32, "%.6f", x);
    return b;
}

/* A checkpoint is written to "<path>.XXXXXX" (mkstemp) and renamed over path; a kill -9 in
 * between leaves that temporary file behind. --resume removes such leftovers of path. */
static void remove_stale_temporaries(const char *path)
{
    char dname[1024];
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    snprintf(dname, sizeof dname, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    if (slash == path) snprintf(dname, sizeof dname, "/");
    const size_t bl = strlen(base);
    DIR *d = opendir(dname);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (strlen(n) != bl + 7 || strncmp(n, base, bl) != 0 || n[bl] != '.') continue;
        int ok = 1;
        for (size_t i = bl + 1; i < bl + 7; i++)
            ok &= (n[i] >= 'a' && n[i] <= 'z') || (n[i] >= 'A' && n[i] <= 'Z') ||
                  (n[i] >= '0' && n[i] <= '9');
        if (!ok) continue;
        char p[2100];
        snprintf(p, sizeof p, "%s/%s", dname, n);
        if (unlink(p) == 0)
            printf("# removed %s (a checkpoint being written when a run was killed)\n", p);
    }
    closedir(d);
}

static void checkpoint(cli_ctx *c, lm_trainer *t, const char *path)
{
    if (path && lm_trainer_save(t, path)) cli_die(c, "%s", rk_last_error());
}

/* Evaluate and write the row of the current step (unless it exists), print the progress
 * line. */
static void evaluate(cli_ctx *c, lm_trainer *t, const settings *s, loop_io *io, double t_start)
{
    char key[256];
    snprintf(key, sizeof key, "%s%zu", io->key, t->step);
    double train = lm_trainer_take_loss(t);
    if (io->rows && table_find(io->rows, key) >= 0) return;
    lm_loss l;
    int rc = lm_trainer_eval(t, s->ctx, NULL, s->val_tokens, s->tc.batch, &l);
    if (rc) cli_die(c, "%s", rk_last_error());
    const double bpc = l.sum / (double)l.count / log(2.0), acc = (double)l.correct / (double)l.count;
    const double tps = io->step_s > 0 ? (double)(io->steps_run * s->tc.batch * s->ctx) / io->step_s
                                      : NAN;
    const double lr = t->step ? lm_lr_at(&s->tc.opt, t->step) : 0.0;
    const double elapsed = progress_now() - t_start;
    char b[6][32];
    if (io->rows && table_addf(io->rows, "%s%s\t%s\t%s\t%s\t%.6g\t%.6g\t%s\t%.1f", key, io->extra,
                               fnum(b[0], train), fnum(b[1], bpc), fnum(b[2], acc), lr,
                               t->step ? t->last_norm : 0.0, fnum(b[3], tps), elapsed))
        cli_die(c, "%s", io->rows->err);
    char eta[32] = "-", tp[32] = "-";
    if (io->steps_run && t->step < s->tc.opt.steps)
        progress_hms(io->step_s / (double)io->steps_run * (double)(s->tc.opt.steps - t->step), eta,
                     sizeof eta);
    if (isfinite(tps)) snprintf(tp, sizeof tp, "%.1fk", tps / 1000.0);
    printf("%sstep %6zu/%zu | loss %s | val %.4f bpc%s | %s tok/s | ETA %s\n", io->label, t->step,
           s->tc.opt.steps, fnum(b[4], train), bpc,
           s->task ? (snprintf(b[5], 32, " acc %.3f", acc), b[5]) : "", tp, eta);
    fflush(stdout);
}

/* Run the trainer to its last step. Returns 0, or nonzero when stopped (sweep_stopped: the
 * signal caught, or -1 when sp->poll asked), a checkpoint written first. */
static int train_loop(cli_ctx *c, lm_trainer *t, const settings *s, loop_io *io,
                      sweep_progress *sp)
{
    const double t_start = progress_now();
    const size_t N = s->tc.opt.steps;
    if (t->step == 0) evaluate(c, t, s, io, t_start);
    while (t->step < N) {
        if (sweep_stopped(sp)) {
            checkpoint(c, t, io->ckpt);
            return progress_stopped() ? progress_stopped() : -1;
        }
        double t0 = progress_now();
        double loss;
        if (lm_trainer_step(t, &loss)) cli_die(c, "%s", rk_last_error());
        io->step_s += progress_now() - t0;
        io->steps_run++;
        if (t->step % s->eval_every == 0 || t->step == N) evaluate(c, t, s, io, t_start);
        if (io->ckpt && (t->step % s->ckpt_every == 0 || t->step == N))
            checkpoint(c, t, io->ckpt);
        progress_update(&sp->pr, io->pr_base + io->pr_scale * (double)t->step,
                        "%sstep %zu/%zu loss %.3f", io->label, t->step, N, loss);
    }
    return 0;
}

/* The time shares of the steps run (lm_timer), printed on `f` (and as a timing row). */
static void print_timing(FILE *f, lm_trainer *t, const settings *s, const loop_io *io)
{
    if (!io->steps_run) return;
    const double *tm = lm_trainer_timers(t);
    double parts = 0.0;
    for (int k = 0; k < LM_T_COUNT; k++) parts += tm[k];
    const double tokens = (double)(io->steps_run * s->tc.batch * s->ctx);
    fprintf(f, "%sthroughput: %.0f tokens/s (%.2f ms per step of %zu tokens, %zu steps); step "
            "time:", io->label, tokens / io->step_s, 1e3 * io->step_s / (double)io->steps_run,
            s->tc.batch * s->ctx, io->steps_run);
    for (int k = 0; k < LM_T_COUNT; k++)
        fprintf(f, " %s %.1f%%", lm_timer_name((lm_timer)k), 100.0 * tm[k] / io->step_s);
    fprintf(f, " other %.1f%%\n", 100.0 * (io->step_s - parts) / io->step_s);
}

/* ---- length extrapolation ----------------------------------------------------------------- */
/* Validation at each length of --lengths (a multiple of the training length) with each scaling
 * (RoPE variants; the others with none), printed, and as rows (prefix, scaling, factor, length,
 * val_bpc, val_acc) into ext and/or tsv; rows already in ext are skipped. */
static void extrapolate(cli_ctx *c, lm_trainer *t, const settings *s, table *ext,
                        train_tsv *tsv, const char *prefix, const char *label, int rope, int pe)
{
    for (size_t li = 0; li < s->nlengths; li++) {
        const size_t k = s->lengths[li], len = k * s->ctx;
        if (pe == LM_PE_LEARNED && k > 1) {
            printf("%s%zux: not evaluated (learned positions stop at %zu)\n", label, k, s->ctx);
            continue;
        }
        for (size_t si = 0; si < s->nscalings; si++) {
            const int sk = s->scalings[si];
            if (!rope && sk != 0) continue;   /* scalings act on RoPE only */
            char key[256];
            snprintf(key, sizeof key, "%s%s\t%zu", prefix, scaling_names[sk], k);
            if (ext && table_find(ext, key) >= 0) continue;
            lm_rope_scaling sc = { scaling_kinds[sk], (double)k, (double)s->ctx };
            if (sk == 0) sc.factor = 0.0;
            size_t eb = s->tc.batch * s->ctx / len;
            lm_loss l;
            if (lm_trainer_eval(t, len, &sc, s->val_tokens, eb ? eb : 1, &l))
                cli_die(c, "%s", rk_last_error());
            const double bpc = l.sum / (double)l.count / log(2.0);
            const double acc = (double)l.correct / (double)l.count;
            if (ext && table_addf(ext, "%s\t%zu\t%.6f\t%.6f", key, len, bpc, acc))
                cli_die(c, "%s", ext->err);
            if (tsv) train_tsv_row(tsv, "%s\t%zu\t%.6f\t%.6f", key, len, bpc, acc);
            printf("%s%zux (length %zu), scaling %s: %.4f bpc\n", label, k, len,
                   scaling_names[sk], bpc);
            fflush(stdout);
        }
    }
}

/* ---- modes -------------------------------------------------------------------------------- */
static const char *const RUN_HEADER =
    "step\ttrain_loss\tval_bpc\tval_acc\tlr\tgrad_norm\ttokens_per_s\telapsed_s";

static int run_single(cli_ctx *c, settings *s, resources *res, int threads)
{
    load_data(c, s, &res->data);
    res->trainer = make_trainer(c, s, &s->arms[0], s->tc.seed, &res->data, threads);
    lm_trainer *t = res->trainer;
    if (s->resume) {
        struct stat st;
        remove_stale_temporaries(s->ckpt);
        if (stat(s->ckpt, &st) == 0) {
            if (lm_trainer_load(t, s->ckpt)) cli_die(c, "--ckpt: %s", rk_last_error());
        } else if (errno != ENOENT) {
            cli_die(c, "--ckpt %s: %s", s->ckpt, strerror(errno));
        }
    }
    char config[2048];
    s->seeds[0] = s->tc.seed;
    s->nseeds = 1;
    config_line(s, &res->data, config, sizeof config);
    if (table_open(&res->out, s->out, config, RUN_HEADER, 1, s->resume))
        cli_die(c, "--out: %s", res->out.err);
    if (machine_run_header(&res->out, s->out, config)) cli_die(c, "--out: %s", res->out.err);
    printf("# model: %zu parameters; data: %s; %s from step %zu\n", t->lay.nparams,
           res->data.desc, t->step ? "resumed" : "starting", t->step);
    progress_catch_signals();
    cli_defer(c, restore_signals, NULL);
    sweep_progress sp;
    memset(&sp, 0, sizeof sp);
    progress_start(&sp.pr, (double)s->tc.opt.steps, (double)t->step);
    loop_io io = { &res->out, "", "", s->ckpt, "", 0.0, 1.0, 0.0, 0 };
    int sig = train_loop(c, t, s, &io, &sp);
    progress_end(&sp.pr);
    print_timing(stdout, t, s, &io);
    if (sig) {
        fprintf(stderr, "ropekit train: interrupted (%s) at step %zu%s\n",
                sig == SIGINT ? "SIGINT" : "SIGTERM", t->step,
                s->ckpt ? "; the checkpoint is written (rerun with --resume)" : "");
        cli_finish(c);
        return 128 + sig;
    }
    return cli_finish(c);
}

static const char *const CMP_HEADER =
    "arm\tseed\tstep\tvariant\tpe\ttrain_loss\tval_bpc\tval_acc\tlr\tgrad_norm\ttokens_per_s"
    "\telapsed_s";
static const char *const EXT_HEADER =
    "arm\tseed\tscaling\tfactor\tlength\tval_bpc\tval_acc";
static const char *const TIMING_HEADER =
    "arm\tseed\tsteps_timed\ttokens_per_s\tms_per_step\tattn_fwd\tattn_bwd\tattn_proj\tmlp"
    "\tnorm_embed\thead\toptimizer\tother";

static void mkdir_p(cli_ctx *c, const char *d)
{
    if (mkdir(d, 0777) != 0 && errno != EEXIST) cli_die(c, "--dir: cannot create %s: %s", d,
                                                        strerror(errno));
    struct stat st;
    if (stat(d, &st) != 0 || !S_ISDIR(st.st_mode)) cli_die(c, "--dir: %s is not a directory", d);
}

/* Names of run (ai, si): its key "arm\tseed", label, checkpoint path. */
typedef struct {
    char key[160], label[160], ckpt[1300], extra[80];
} run_names;

static void names_of(const settings *s, size_t ai, size_t si, run_names *n)
{
    const train_arm *a = &s->arms[ai];
    snprintf(n->key, sizeof n->key, "%s\t%lu", a->label, s->seeds[si]);
    snprintf(n->label, sizeof n->label, "[%s seed %lu] ", a->label, s->seeds[si]);
    snprintf(n->extra, sizeof n->extra, "\t%s\t%s", a->variant, pe_names[a->pe]);
    char fname[64];
    snprintf(fname, sizeof fname, "%s", a->label);
    for (char *p = fname; *p; p++)
        if (*p == ':') *p = '_';
    snprintf(n->ckpt, sizeof n->ckpt, "%s/ckpt/%s-s%lu.ckpt", s->dir, fname, s->seeds[si]);
}

/* Every evaluation length fits the validation part (before any run starts). */
static void check_lengths(cli_ctx *c, const settings *s, const lm_data *d)
{
    if (d->kind != LM_DATA_TEXT) return;
    for (size_t i = 0; i < s->nlengths; i++) {
        size_t len = s->lengths[i] * s->ctx;
        if (d->n - d->n_train < len + 1)
            cli_die(c, "--lengths: %zux the context is %zu tokens, more than the validation part "
                    "of %s holds (%zu bytes)", s->lengths[i], len, d->desc, d->n - d->n_train);
    }
}

/* ---- --compare ---------------------------------------------------------------------------- */
/* The settings, resources and configuration lines of a --compare (and of the other modes). */
typedef struct {
    settings  s;
    resources res;
    int       threads;
    char      config[4096], ext_config[4400];
    char      path[NTABLES][1200];
} train_state;

/* Before any run: the data, every arm can be trained, the configuration lines, DIR and
 * DIR/ckpt (under MPI on every rank: a rank writes the checkpoints of its runs there). */
static void compare_prepare(cli_ctx *c, train_state *S)
{
    settings *s = &S->s;
    load_data(c, s, &S->res.data);
    check_lengths(c, s, &S->res.data);
    /* every arm can be trained (before any file is written) */
    for (size_t i = 0; i < s->narms; i++) {
        lm_trainer *t = make_trainer(c, s, &s->arms[i], s->seeds[0], &S->res.data, 1);
        lm_trainer_destroy(t);
    }
    config_line(s, &S->res.data, S->config, sizeof S->config);
    char *ext = S->ext_config;
    const size_t len = sizeof S->ext_config;
    size_t n = (size_t)snprintf(ext, len, "%s lengths=", S->config);
    for (size_t i = 0; i < s->nlengths; i++)
        n += (size_t)snprintf(ext + n, len - n, "%s%zu", i ? "," : "", s->lengths[i]);
    for (size_t i = 0; i < s->nscalings; i++)
        n += (size_t)snprintf(ext + n, len - n, "%s%s", i ? "," : " scalings=",
                              scaling_names[s->scalings[i]]);
    static const char *const file[NTABLES] = { "runs.tsv", "extrapolation.tsv", "timing.tsv" };
    for (int k = 0; k < NTABLES; k++)
        snprintf(S->path[k], sizeof S->path[k], "%s/%s", s->dir, file[k]);
    char ckdir[1100];
    mkdir_p(c, s->dir);
    snprintf(ckdir, sizeof ckdir, "%s/ckpt", s->dir);
    mkdir_p(c, ckdir);
}

/* Table k of --compare (TAB_RUNS, TAB_EXT, TAB_TIMING). */
static void compare_table(const train_state *S, size_t k, sweep_table *tt)
{
    const char *const header[NTABLES] = { CMP_HEADER, EXT_HEADER, TIMING_HEADER };
    static const size_t nkey[NTABLES] = { 3, 4, 2 };
    tt->path = S->path[k];
    tt->opt = NULL;
    tt->header = header[k];
    tt->nkey = nkey[k];
    snprintf(tt->config, sizeof tt->config, "%s", k == TAB_EXT ? S->ext_config : S->config);
}

static void open_tables(cli_ctx *c, train_state *S, int resume)
{
    sweep_table tt;
    for (size_t k = 0; k < NTABLES; k++) {
        compare_table(S, k, &tt);
        table *t = &S->res.tab[k];
        if (table_open(t, tt.path, tt.config, tt.header, tt.nkey, resume)) cli_die(c, "%s", t->err);
    }
}

/* Finished before: its last row, every extrapolation row and its timing row are in the
 * tables. */
static int run_done(const settings *s, const table *tab, size_t ai, size_t si)
{
    const train_arm *a = &s->arms[ai];
    run_names n;
    names_of(s, ai, si, &n);
    char last[200];
    snprintf(last, sizeof last, "%s\t%zu", n.key, s->tc.opt.steps);
    int done = table_find(&tab[TAB_RUNS], last) >= 0 && table_find(&tab[TAB_TIMING], n.key) >= 0;
    for (size_t li = 0; li < s->nlengths && done; li++)
        for (size_t k = 0; k < s->nscalings && done; k++) {
            if (a->pe == LM_PE_LEARNED && s->lengths[li] > 1) continue;
            if (a->rope == RK_ROPE_NONE && s->scalings[k] != 0) continue;
            char ek[256];
            snprintf(ek, sizeof ek, "%s\t%s\t%zu", n.key, scaling_names[s->scalings[k]],
                     s->lengths[li]);
            done = table_find(&tab[TAB_EXT], ek) >= 0;
        }
    return done;
}

/* The first evaluated step up to `step` that has no row "key<step>" in the runs table, or
 * SIZE_MAX. */
static size_t missing_evaluation(const settings *s, const table *runs, const char *key,
                                 size_t step)
{
    for (size_t st = 0; st <= step; st++) {
        if (st % s->eval_every && st != s->tc.opt.steps) continue;
        char k[256];
        snprintf(k, sizeof k, "%s%zu", key, st);
        if (table_find(runs, k) < 0) return st;
    }
    return SIZE_MAX;
}

/* Train run (ai, si) from its checkpoint (with --resume) to the end, then its timing row and
 * its extrapolation, into the tables tab. A checkpoint ahead of the runs table (its rows were
 * on their way to another process when the job ended: mpi/) is dropped: the run trains again
 * from step 0, to the same bits. sp->keep gets the final checkpoint before the rows that mark
 * the run finished. Returns 0, or nonzero if stopped (train_loop; checkpoint written). */
static int run_one(cli_ctx *c, train_state *S, table *tab, size_t ai, size_t si, int threads,
                   sweep_progress *sp, double pr_base, double pr_scale)
{
    const settings *s = &S->s;
    resources *res = &S->res;
    const train_arm *a = &s->arms[ai];
    run_names n;
    names_of(s, ai, si, &n);
    res->trainer = make_trainer(c, s, a, s->seeds[si], &res->data, threads);
    lm_trainer *t = res->trainer;
    char key[200];
    snprintf(key, sizeof key, "%s\t", n.key);
    struct stat st;
    if (s->resume) remove_stale_temporaries(n.ckpt);
    if (s->resume && stat(n.ckpt, &st) == 0) {
        if (lm_trainer_load(t, n.ckpt)) cli_die(c, "%s", rk_last_error());
        const size_t gap = missing_evaluation(s, &tab[TAB_RUNS], key, t->step);
        if (gap != SIZE_MAX) {
            printf("%s%s is at step %zu but runs.tsv lacks step %zu: training again from step "
                   "0\n", n.label, n.ckpt, t->step, gap);
            lm_trainer_destroy(t);
            res->trainer = NULL;
            t = res->trainer = make_trainer(c, s, a, s->seeds[si], &res->data, threads);
        }
    }
    progress_clear(&sp->pr);
    printf("%s%zu parameters, %s at step %zu\n", n.label, t->lay.nparams,
           t->step ? "resumed" : "starting", t->step);
    fflush(stdout);
    loop_io io = { &tab[TAB_RUNS], key, n.extra, n.ckpt, n.label, pr_base, pr_scale, 0.0, 0 };
    int sig = train_loop(c, t, s, &io, sp);
    if (sig) return sig;
    if (sp->keep) sp->keep(sp->poll_arg, n.ckpt);
    table *timing = &tab[TAB_TIMING];
    if (io.steps_run && table_find(timing, n.key) < 0) {
        const double *tm = lm_trainer_timers(t);
        double parts = 0.0;
        char row[512];
        size_t m = (size_t)snprintf(row, sizeof row, "%s\t%zu\t%.1f\t%.3f", n.key, io.steps_run,
                                    (double)(io.steps_run * s->tc.batch * s->ctx) / io.step_s,
                                    1e3 * io.step_s / (double)io.steps_run);
        for (int k = 0; k < LM_T_COUNT; k++) {
            parts += tm[k];
            m += (size_t)snprintf(row + m, sizeof row - m, "\t%.4f", tm[k] / io.step_s);
        }
        snprintf(row + m, sizeof row - m, "\t%.4f", (io.step_s - parts) / io.step_s);
        if (table_add(timing, row)) cli_die(c, "%s", timing->err);
        print_timing(stdout, t, s, &io);
    }
    extrapolate(c, t, s, &tab[TAB_EXT], NULL, key, n.label, a->rope != RK_ROPE_NONE, a->pe);
    lm_trainer_destroy(t);
    res->trainer = NULL;
    fflush(stdout);
    return 0;
}

/* --jobs > 1: each pending run in a child process (fork) with its share of the threads; the
 * children append their rows to the tables (one write(2) per line on an O_APPEND file), the
 * parent waits, then reads the tables back. Same bits as one process: every run is a function
 * of its configuration and seed. Returns 0, or the signal that stopped the runs. */
static int run_children(cli_ctx *c, train_state *S, const size_t *todo, size_t ntodo,
                        size_t jobs, sweep_progress *sp)
{
    const settings *s = &S->s;
    pid_t pid[TRAIN_MAX_ARMS * TRAIN_MAX_SEEDS];
    size_t next = 0, running = 0, finished = 0;
    int sig = 0, failed = -1, fail_code = 0;
    for (size_t i = 0; i < ntodo; i++) pid[i] = 0;
    const int per = S->threads / (int)jobs > 1 ? S->threads / (int)jobs : 1;
    while (running || (next < ntodo && !sig && failed < 0)) {
        while (running < jobs && next < ntodo && !sig && failed < 0 && !progress_stopped()) {
            fflush(stdout);
            fflush(stderr);
            pid_t p = fork();
            if (p < 0) cli_die(c, "cannot start a run: fork: %s", strerror(errno));
            if (p == 0) {
                sp->pr.on = 0;   /* the parent draws the progress line */
                machine_set_threads(per);
                size_t ai = todo[next] % s->narms, si = todo[next] / s->narms;
                int st = run_one(c, S, S->res.tab, ai, si, per, sp, 0.0, 1.0);
                fflush(stdout);
                _exit(st ? 128 + st : 0);
            }
            pid[next++] = p;
            running++;
        }
        progress_update(&sp->pr, (double)finished * (double)s->tc.opt.steps, "%zu of %zu runs "
                        "done, %zu running", finished, ntodo, running);
        int status;
        pid_t w = waitpid(-1, &status, 0);
        if (w < 0) {
            if (errno == EINTR) continue;
            cli_die(c, "waiting for the runs: %s", strerror(errno));
        }
        size_t i = 0;
        while (i < next && pid[i] != w) i++;
        if (i == next) continue;
        running--;
        finished++;
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (code == 128 + SIGINT || code == 128 + SIGTERM) sig = code - 128;
        else if (code && failed < 0) {
            failed = (int)i;
            fail_code = code;
        }
        if (progress_stopped() && !sig) sig = progress_stopped();
    }
    if (failed >= 0) {
        run_names n;
        names_of(s, todo[failed] % s->narms, todo[failed] / s->narms, &n);
        cli_die(c, "the run %sfailed (exit %d; its message is above)", n.label, fail_code);
    }
    return sig;
}

/* The summaries from the complete tables: curves, paired, claims, extrapolation_summary. */
static void compare_summary(cli_ctx *c, const train_state *S, const table *tab)
{
    const settings *s = &S->s;
    size_t steps[4096], nsteps = 0;
    for (size_t st = 0; st <= s->tc.opt.steps && nsteps < 4096; st++)
        if (st % s->eval_every == 0 || st == s->tc.opt.steps) steps[nsteps++] = st;
    train_report_cfg rc = { s->arms, s->narms, s->seeds, s->nseeds, steps, nsteps,
                            s->report_step, s->level, S->config };
    char err[512];
    if (train_report(&tab[TAB_RUNS], &rc, s->dir, stdout, err, sizeof err)) cli_die(c, "%s", err);
    rc.config = S->ext_config;
    if (train_report_extrapolation(&tab[TAB_EXT], &rc, s->dir, stdout, err, sizeof err))
        cli_die(c, "%s", err);
}

static int run_compare(cli_ctx *c, train_state *S)
{
    settings *s = &S->s;
    resources *res = &S->res;
    compare_prepare(c, S);
    open_tables(c, S, s->resume);
    if (machine_run_header(&res->tab[TAB_RUNS], S->path[TAB_RUNS], S->config))
        cli_die(c, "%s", res->tab[TAB_RUNS].err);

    /* the runs to do, seed by seed (run index si * narms + ai) */
    size_t todo[TRAIN_MAX_ARMS * TRAIN_MAX_SEEDS], ntodo = 0;
    for (size_t si = 0; si < s->nseeds; si++)
        for (size_t ai = 0; ai < s->narms; ai++)
            if (!run_done(s, res->tab, ai, si)) todo[ntodo++] = si * s->narms + ai;
    size_t jobs = s->jobs ? s->jobs : (size_t)S->threads;
    if (jobs > ntodo) jobs = ntodo ? ntodo : 1;
    if (cli_exit_hook) jobs = 1;   /* in a test harness's process: no fork */
    printf("# %zu of %zu runs to do, %zu at a time\n", ntodo, s->narms * s->nseeds, jobs);
    fflush(stdout);

    progress_catch_signals();
    cli_defer(c, restore_signals, NULL);
    const double per_run = (double)s->tc.opt.steps;
    sweep_progress sp;
    memset(&sp, 0, sizeof sp);
    progress_start(&sp.pr, per_run * (double)ntodo, 0.0);
    int sig = 0;
    if (jobs == 1) {
        for (size_t k = 0; k < ntodo && !sig; k++)
            sig = run_one(c, S, res->tab, todo[k] % s->narms, todo[k] / s->narms, S->threads,
                          &sp, per_run * (double)k, 1.0);
    } else {
        sig = run_children(c, S, todo, ntodo, jobs, &sp);
        /* the children's rows */
        for (int k = 0; k < NTABLES; k++) table_close(&res->tab[k]);
        open_tables(c, S, 1);
    }
    progress_end(&sp.pr);
    if (sig) {
        fprintf(stderr, "ropekit train: interrupted (%s); finished rows and checkpoints are in %s "
                "(rerun with --resume to continue)\n", sig == SIGINT ? "SIGINT" : "SIGTERM",
                s->dir);
        cli_finish(c);
        return 128 + sig;
    }
    compare_summary(c, S, res->tab);
    return cli_finish(c);
}

static int run_eval(cli_ctx *c, settings *s, resources *res, int threads)
{
    lm_ckpt_info info;
    if (lm_ckpt_peek(s->eval, &info)) cli_die(c, "--eval: %s", rk_last_error());
    /* the data it was trained on */
    int rc;
    if (info.data_kind == LM_DATA_SHIFT) {
        if (s->data) cli_die(c, "--eval: the checkpoint was trained on the shift task, not a file");
        rc = lm_data_shift(&res->data, (size_t)info.shift, (size_t)info.alphabet);
    } else if (s->data) {
        rc = lm_data_load_file(&res->data, s->data);
    } else {
        rc = lm_data_load_fortunes(&res->data, NULL);
    }
    if (rc) cli_die(c, "%s%s", s->data ? "--data: " : "", rk_last_error());
    if (res->data.hash != info.data_hash || res->data.n != info.data_len)
        cli_die(c, "--eval: the checkpoint was trained on other data (%llu bytes, FNV-1a %016llx); "
                "%s has %zu bytes: give the same --data", (unsigned long long)info.data_len,
                (unsigned long long)info.data_hash, res->data.desc, res->data.n);
    /* the model, its attention rebuilt from the variant table (a changed table is refused when
     * the checkpoint is loaded) */
    train_arm a;
    char name[LM_NAME_MAX];
    snprintf(name, sizeof name, "%s", info.cfg.attn_name);
    parse_arm(c, "eval", name, (int)info.cfg.pe, &a);
    s->ctx = info.cfg.ctx;
    s->d_model = info.cfg.d_model;
    s->layers = info.cfg.n_layers;
    s->heads = info.cfg.n_heads;
    s->d_ff = info.cfg.d_ff;
    s->features = info.cfg.attn.n_features ? info.cfg.attn.n_features : s->features;
    /* the RoPE it was trained with (a --rope-config run's base, rotated width and pairing) */
    s->rope_set = 1;
    s->rope_style = info.cfg.attn.rope_cfg.style;
    s->rope_base = info.cfg.attn.rope_cfg.base;
    s->rope_rotary = info.cfg.attn.rope_cfg.rotary_dim;
    s->tc = info.tc;
    check_lengths(c, s, &res->data);
    res->trainer = make_trainer(c, s, &a, info.tc.seed, &res->data, threads);
    if (lm_trainer_load(res->trainer, s->eval)) cli_die(c, "--eval: %s", rk_last_error());
    char config[1500];
    snprintf(config, sizeof config, "ropekit train --eval v1 checkpoint=%s variant=%s pe=%s "
             "step=%zu ctx=%zu val_tokens=%zu", s->eval, a.variant, pe_names[a.pe],
             res->trainer->step, s->ctx, s->val_tokens);
    char err[512];
    if (s->out && !(res->tsv = train_tsv_open(s->out, config, "arm\tseed\tscaling\tfactor"
                                              "\tlength\tval_bpc\tval_acc", err, sizeof err)))
        cli_die(c, "--out: %s", err);
    printf("# %s\n", config);
    char prefix[160];
    snprintf(prefix, sizeof prefix, "%s\t%lu\t", a.label, info.tc.seed);
    extrapolate(c, res->trainer, s, NULL, res->tsv, prefix, "", a.rope != RK_ROPE_NONE, a.pe);
    train_tsv *tsv = res->tsv;
    res->tsv = NULL;   /* committed or aborted here (cli_die would abort it) */
    if (tsv && train_tsv_commit(tsv, err, sizeof err)) cli_die(c, "--out: %s", err);
    return cli_finish(c);
}

int cmd_train(int argc, char **argv)
{
    cli_ctx c;
    cli_parse(&c, &spec, argc, argv);
    static train_state S;
    memset(&S, 0, sizeof S);
    parse_settings(&c, &S.s);
    S.threads = machine_set_threads(S.s.threads);
    cli_defer(&c, free_resources, &S.res);
    if (S.s.eval) return run_eval(&c, &S.s, &S.res, S.threads);
    if (S.s.dir) return run_compare(&c, &S);
    return run_single(&c, &S.s, &S.res, S.threads);
}

/* ---- --compare as a sweep (experiments/sweep.h): ropekit-mpi train ------------------------- */
/* A unit is a run (arm, seed), numbered si * narms + ai as run_compare runs them; the tables
 * are runs, extrapolation and timing; the ranks are the runs at a time (no --jobs). */

/* The relative time of a training step of an arm, which balances the ranks: FAVOR+ and linear
 * attention train about 1.5 times slower per token than exact softmax at this trainer's sizes
 * (1 thread, the default model, Zen 5, 2026-12-05: 77.3k tokens/s softmax, 51.8k performer;
 * linear taken as performer, its kernels are the same chunked causal ones). */
static double arm_cost(const train_arm *a)
{
    return a->kind == RK_PERFORMER || a->kind == RK_LINEAR ? 1.5 : 1.0;
}

static void *driver_setup(cli_ctx *c)
{
    static train_state S;
    memset(&S, 0, sizeof S);
    if (!cli_get(c, "compare"))
        cli_die(c, "only --compare runs over the ranks (one run, --eval: ropekit train)");
    if (cli_get(c, "jobs"))
        cli_die(c, "--jobs: under mpirun each rank trains one run at a time; for more runs at a "
                "time start more ranks (-np), with --threads cores / ranks");
    parse_settings(c, &S.s);
    S.threads = machine_set_threads(S.s.threads);
    cli_defer(c, free_resources, &S.res);
    compare_prepare(c, &S);
    return &S;
}

static void driver_table(cli_ctx *c, void *st, size_t k, sweep_table *tt)
{
    (void)c;
    compare_table(st, k, tt);
}

static size_t driver_units(void *st)
{
    const settings *s = &((train_state *)st)->s;
    return s->narms * s->nseeds;
}

/* work: steps x the arm's cost; done: up to its last evaluation in the runs table */
static size_t driver_todo(void *st, const table *t, size_t u, double *work, double *done)
{
    const settings *s = &((train_state *)st)->s;
    const size_t ai = u % s->narms, si = u / s->narms, N = s->tc.opt.steps;
    const double cost = arm_cost(&s->arms[ai]);
    const int finished = run_done(s, t, ai, si);
    if (work) *work = cost * (double)N;
    if (done) {
        run_names n;
        names_of(s, ai, si, &n);
        size_t last = 0;
        for (size_t step = 0; step <= N && !finished; step += s->eval_every) {
            char key[256];
            snprintf(key, sizeof key, "%s\t%zu", n.key, step);
            if (table_find(&t[TAB_RUNS], key) >= 0) last = step;
        }
        *done = cost * (double)(finished ? N : last);
    }
    return !finished;
}

static int driver_run(cli_ctx *c, void *st, table *t, size_t u, sweep_progress *p)
{
    train_state *S = st;
    const size_t ai = u % S->s.narms, si = u / S->s.narms;
    double work, done;
    driver_todo(st, t, u, &work, &done);
    const double cost = arm_cost(&S->s.arms[ai]);
    if (run_one(c, S, t, ai, si, S->threads, p, p->done - done, cost)) return 1;
    p->done += work - done;
    return 0;
}

static void driver_summary(cli_ctx *c, void *st, table *t) { compare_summary(c, st, t); }

const sweep_driver train_compare_driver = {
    &spec, NTABLES, driver_setup, driver_table, driver_units, driver_todo, driver_run, NULL,
    driver_summary, 1,
    "--compare only; its (arm, seed) runs are spread over the\n"
    "ranks (largest first to the least-loaded rank; a FAVOR+ or linear run counts 1.5 softmax\n"
    "runs), each rank trains one run at a time (--jobs is refused: start more ranks) with\n"
    "--threads threads; rank 0 writes the tables in DIR and receives every final checkpoint\n"
    "into DIR/ckpt.",
};
