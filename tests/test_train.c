/* Training (model/train.c, model/checkpoint.c, model/data.c) and `ropekit train`:
 *   - bit-identical trajectories: 1 vs 2 threads; N steps straight vs N/2, checkpoint, a fresh
 *     trainer loading it, N/2 more (parameters and both AdamW moments compared bit for bit);
 *   - checkpoints refused with a clear message: bad magic, other version, truncated, a flipped
 *     byte (checksum), another configuration, other data;
 *   - kill -9 of a `ropekit train` process between checkpoints: the checkpoint on disk is whole
 *     and at a checkpoint step, and --resume from it ends with the same file as a run that was
 *     never killed;
 *   - the synthetic shift task: with RoPE the model learns to output the token K places back,
 *     without position information it stays near chance (bounds from the number of evaluated
 *     tokens, see test_shift_task);
 *   - the data: the fortunes files and their split, --data files, the batch order;
 *   - the command line: bad input exits 2 with one line and leaves no file; --compare end to
 *     end on a tiny model (tables, summaries, claims, resume), --eval of a checkpoint. */
#include "check.h"
#include "run_cli.h"

#ifndef RK_TESTS_DIR
#error "RK_TESTS_DIR must name the tests directory (the Makefile defines it)"
#endif
#include "../model/lm.h"
#include "../experiments/variant.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <gsl/gsl_errno.h>

static char dir[512];

static const char *P(const char *name)
{
    static char ring[16][1300];
    static unsigned next;
    char *b = ring[next++ % 16];
    snprintf(b, sizeof ring[0], "%s/%s", dir, name);
    return b;
}

static void rm_tree(const char *d)
{
    DIR *dd = opendir(d);
    if (!dd) return;
    struct dirent *e;
    while ((e = readdir(dd))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", d, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) rm_tree(p);
        else unlink(p);
    }
    closedir(dd);
    rmdir(d);
}

static int count_entries(const char *d)
{
    DIR *dd = opendir(d);
    if (!dd) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dd))) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(dd);
    return n;
}

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* A small English-like text (deterministic) for --data: 40 KB. */
static void make_text(const char *path)
{
    static const char *const words[] = { "the", "cat", "sat", "on", "a", "mat", "and", "dog",
                                         "ran", "to", "its", "home", "while", "rain", "fell" };
    char *buf = malloc(40000);
    size_t n = 0;
    unsigned long long x = 12345;
    while (n < 39000) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        const char *w = words[(x >> 33) % 15];
        n += (size_t)sprintf(buf + n, "%s%s", w, (x >> 20) % 7 == 0 ? ".\n" : " ");
    }
    write_file(path, buf, n);
    free(buf);
}

static int setup(void **state)
{
    (void)state;
    gsl_set_error_handler_off();
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/ropekit-train-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(dir)) return -1;
    make_text(P("text.txt"));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rm_tree(dir);
    return 0;
}

/* ---- trainers ------------------------------------------------------------------------------ */
/* A tiny configuration of a variant; 0 if it has no backward in this build. */
static int tiny(lm_config *cfg, lm_train_config *tc, const char *vname, lm_pe pe, size_t T,
                size_t steps)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->ctx = T;
    cfg->d_model = 16;
    cfg->n_heads = 2;
    cfg->n_layers = 2;
    cfg->pe = pe;
    snprintf(cfg->attn_name, sizeof cfg->attn_name, "%s", vname);
    assert_int_equal(variant_config(vname, T, T, 8, 8, 1, 16, 1, &cfg->attn), 0);
    memset(tc, 0, sizeof *tc);
    tc->seed = 3;
    tc->batch = 4;
    tc->redraw = 3;   /* FAVOR+ draws a new projection every 3 steps: crossed by the resume */
    tc->opt = (lm_adamw_config){ .lr = 3e-3, .min_lr = 3e-4, .warmup = 2, .steps = steps,
                                 .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.1,
                                 .clip = 1.0 };
    return 1;
}

static lm_trainer *make(const lm_config *cfg, const lm_train_config *tc, const lm_data *d,
                        int nt, int *unsupported)
{
    lm_trainer *t = NULL;
    int rc = lm_trainer_create(&t, cfg, tc, d, nt);
    if (rc == RK_EUNSUP && unsupported) {
        printf("  %s: %s (skipped)\n", cfg->attn_name, rk_last_error());
        *unsupported = 1;
        return NULL;
    }
    if (rc) fail_msg("lm_trainer_create: %s", rk_last_error());
    return t;
}

static void steps(lm_trainer *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double loss;
        assert_rk_ok(lm_trainer_step(t, &loss));
        assert_true(isfinite(loss));
    }
}

static void assert_same_state(const lm_trainer *a, const lm_trainer *b)
{
    const size_t n = a->lay.nparams * sizeof(float);
    assert_int_equal(a->step, b->step);
    assert_memory_equal(a->params, b->params, n);
    assert_memory_equal(a->m, b->m, n);
    assert_memory_equal(a->v, b->v, n);
}

static void resume_case(const char *vname, lm_pe pe, const lm_data *d)
{
    lm_config cfg;
    lm_train_config tc;
    tiny(&cfg, &tc, vname, pe, 16, 8);
    int unsup = 0;
    lm_trainer *a = make(&cfg, &tc, d, 2, &unsup);
    if (unsup) return;
    steps(a, 8);
    lm_trainer *b = make(&cfg, &tc, d, 1, NULL);
    steps(b, 4);
    assert_rk_ok(lm_trainer_save(b, P("half.ckpt")));
    steps(b, 1);                      /* a trainer ahead of the checkpoint is reset by the load */
    lm_trainer *c = make(&cfg, &tc, d, 2, NULL);
    assert_rk_ok(lm_trainer_load(c, P("half.ckpt")));
    assert_int_equal(c->step, 4);
    steps(c, 4);
    assert_same_state(a, c);          /* 8 steps at 2 threads = 4 at 1 thread + resume + 4 at 2 */
    assert_rk_ok(lm_trainer_load(b, P("half.ckpt")));
    steps(b, 4);
    assert_same_state(a, b);
    /* the loss accumulator travels with the checkpoint */
    assert_memory_equal(&a->loss_sum, &c->loss_sum, sizeof a->loss_sum);
    lm_trainer_destroy(a);
    lm_trainer_destroy(b);
    lm_trainer_destroy(c);
    unlink(P("half.ckpt"));
}

static void test_resume_bits(void **state)
{
    (void)state;
    lm_data text, shift;
    assert_rk_ok(lm_data_load_file(&text, P("text.txt")));
    assert_rk_ok(lm_data_shift(&shift, 2, 8));
    resume_case("softmax-rope", LM_PE_NONE, &text);
    resume_case("softmax", LM_PE_LEARNED, &shift);
    resume_case("uniform", LM_PE_SINUSOIDAL, &text);
    resume_case("performer-rope-qk", LM_PE_NONE, &text);
    resume_case("performer", LM_PE_LEARNED, &shift);
    lm_data_free(&text);
    lm_data_free(&shift);
}

/* ---- checkpoint errors ---------------------------------------------------------------------- */
static void expect_load_error(lm_trainer *t, const char *path, int code, const char *words)
{
    int rc = lm_trainer_load(t, path);
    if (rc != code)
        fail_msg("loading %s: got %d (%s: %s), expected %d", path, rc, rk_strerror(rc),
                 rk_last_error(), code);
    if (!strstr(rk_last_error(), words))
        fail_msg("loading %s: message '%s' lacks '%s'", path, rk_last_error(), words);
}

static void test_checkpoint_errors(void **state)
{
    (void)state;
    lm_data d;
    assert_rk_ok(lm_data_load_file(&d, P("text.txt")));
    lm_config cfg;
    lm_train_config tc;
    tiny(&cfg, &tc, "softmax-rope", LM_PE_NONE, 16, 6);
    lm_trainer *t = make(&cfg, &tc, &d, 1, NULL);
    steps(t, 2);
    assert_rk_ok(lm_trainer_save(t, P("ok.ckpt")));
    size_t len;
    unsigned char *b = read_file(P("ok.ckpt"), &len);
    /* the size: header, 3 float arrays, checksum */
    assert_true(len > 12 * t->lay.nparams);
    lm_ckpt_info info;
    assert_rk_ok(lm_ckpt_peek(P("ok.ckpt"), &info));
    assert_int_equal(info.step, 2);
    assert_int_equal(info.cfg.d_model, 16);
    assert_string_equal(info.cfg.attn_name, "softmax-rope");

    unsigned char *m = malloc(len);
    memcpy(m, b, len); m[0] = 'X';
    write_file(P("bad.ckpt"), (char *)m, len);
    expect_load_error(t, P("bad.ckpt"), RK_EFORMAT, "not a ropekit checkpoint");
    memcpy(m, b, len); m[8] = 2;
    write_file(P("bad.ckpt"), (char *)m, len);
    expect_load_error(t, P("bad.ckpt"), RK_EFORMAT, "version 2");
    write_file(P("bad.ckpt"), (char *)b, len - 100);
    expect_load_error(t, P("bad.ckpt"), RK_EFORMAT, "truncated");
    write_file(P("bad.ckpt"), (char *)b, 20);
    expect_load_error(t, P("bad.ckpt"), RK_EFORMAT, "truncated");
    memcpy(m, b, len); m[len / 2] ^= 0x10;
    write_file(P("bad.ckpt"), (char *)m, len);
    expect_load_error(t, P("bad.ckpt"), RK_EFORMAT, "checksum");
    expect_load_error(t, P("missing.ckpt"), RK_EIO, "cannot open");
    /* another configuration */
    lm_train_config tc2 = tc;
    tc2.opt.lr = 1e-3;
    lm_trainer *u = make(&cfg, &tc2, &d, 1, NULL);
    expect_load_error(u, P("ok.ckpt"), RK_EINVAL, "lr: 0.0030000000000000001 vs 0.001");
    lm_trainer_destroy(u);
    lm_config cfg2 = cfg;
    cfg2.pe = LM_PE_SINUSOIDAL;
    u = make(&cfg2, &tc, &d, 1, NULL);
    expect_load_error(u, P("ok.ckpt"), RK_EINVAL, "pe: none vs sinusoidal");
    lm_trainer_destroy(u);
    /* other data */
    lm_data s;
    assert_rk_ok(lm_data_shift(&s, 2, 8));
    u = make(&cfg, &tc, &s, 1, NULL);
    expect_load_error(u, P("ok.ckpt"), RK_EINVAL, "data");
    lm_trainer_destroy(u);
    lm_data_free(&s);
    /* a failed load leaves the trainer as it was */
    lm_trainer *v = make(&cfg, &tc, &d, 1, NULL);
    steps(v, 2);
    assert_same_state(t, v);
    free(m);
    free(b);
    lm_trainer_destroy(t);
    lm_trainer_destroy(v);
    lm_data_free(&d);
    unlink(P("ok.ckpt"));
    unlink(P("bad.ckpt"));
}

/* ---- the shift task ------------------------------------------------------------------------- */
/* Train on "output the token K places back" (K = 3, 16 symbols, T = 32) and measure the accuracy
 * on n validation targets (4096 / 32 = 128 windows of 29 targets: n = 3712). The outcome is
 * deterministic; the margins say it does not hang on a lucky draw: by Hoeffding, an accuracy
 * measured on n targets is within sqrt(ln(1/delta) / (2n)) = 0.043 of the model's accuracy on
 * the whole task with probability 1 - delta, delta = 1e-6. With RoPE the lower end must exceed
 * 0.9 (it solves the task); without positions (NoPE, causal) the upper end must stay below
 * 0.35, far from solving it. Chance is 1/16; a causal model without positions sits a little
 * above it (about 0.15 here) because it can still guess among the few tokens of a short prefix
 * and infer a rough position from how many tokens it attends to. */
static double shift_accuracy(const char *vname, lm_pe pe, size_t *n)
{
    lm_data d;
    assert_rk_ok(lm_data_shift(&d, 3, 16));
    lm_config cfg;
    lm_train_config tc;
    tiny(&cfg, &tc, vname, pe, 32, 200);
    cfg.d_model = 32;
    cfg.n_layers = 1;
    assert_int_equal(variant_config(vname, 32, 32, 16, 16, 1, 32, 1, &cfg.attn), 0);
    tc.batch = 16;
    tc.opt.lr = 5e-3;
    tc.opt.min_lr = 5e-4;
    tc.opt.warmup = 10;
    lm_trainer *t = make(&cfg, &tc, &d, 2, NULL);
    steps(t, 200);
    lm_loss l;
    assert_rk_ok(lm_trainer_eval(t, 32, NULL, 4096, 16, &l));
    lm_trainer_destroy(t);
    lm_data_free(&d);
    *n = l.count;
    return (double)l.correct / (double)l.count;
}

static void test_shift_task(void **state)
{
    (void)state;
    size_t n1, n2;
    double rope = shift_accuracy("softmax-rope", LM_PE_NONE, &n1);
    double nope = shift_accuracy("softmax", LM_PE_NONE, &n2);
    assert_int_equal(n1, 128 * 29);
    double m = sqrt(log(1e6) / (2.0 * (double)n1));
    printf("  shift task (K = 3, 16 symbols), %zu targets: accuracy with RoPE %.4f, without "
           "positions %.4f (chance 0.0625; margin +- %.3f)\n", n1, rope, nope, m);
    assert_true(rope - m > 0.9);
    assert_true(nope + m < 0.35);
}

/* ---- data ------------------------------------------------------------------------------------ */
static void test_data(void **state)
{
    (void)state;
    lm_data d;
    /* Debian's fortunes (scripts/ensure-deps.sh installs the package) */
    assert_rk_ok(lm_data_load_fortunes(&d, NULL));
    size_t nf = 0;
    while (lm_fortunes_files[nf]) nf++;
    assert_int_equal(nf, 43);
    assert_int_equal(d.n, 2576674);
    assert_int_equal(d.n_train, 2319006);   /* floor(0.9 n) */
    assert_non_null(strstr(d.desc, "43 files"));
    lm_data_free(&d);
    /* errors: missing, empty, too short for the context */
    assert_rk_error(lm_data_load_file(&d, P("missing.txt")), RK_EIO);
    assert_non_null(strstr(rk_last_error(), "missing.txt"));
    write_file(P("empty.txt"), "", 0);
    assert_rk_error(lm_data_load_file(&d, P("empty.txt")), RK_EFORMAT);
    assert_non_null(strstr(rk_last_error(), "is empty"));
    assert_rk_error(lm_data_load_fortunes(&d, P("nowhere")), RK_EIO);
    assert_non_null(strstr(rk_last_error(), "apt-get install fortunes"));
    write_file(P("short.txt"), "hello world, a short text", 25);
    assert_rk_ok(lm_data_load_file(&d, P("short.txt")));
    lm_config cfg;
    lm_train_config tc;
    tiny(&cfg, &tc, "softmax", LM_PE_NONE, 16, 4);
    lm_trainer *t;
    assert_rk_error(lm_trainer_create(&t, &cfg, &tc, &d, 1), RK_EINVAL);
    assert_non_null(strstr(rk_last_error(), "too short"));
    lm_data_free(&d);
    /* the batch order: a function of (seed, step, row); windows inside the training part */
    assert_rk_ok(lm_data_load_file(&d, P("text.txt")));
    int32_t a[64], at[64], b[64], bt[64];
    lm_data_train_batch(&d, 5, 7, 2, 32, a, at);
    lm_data_train_batch(&d, 5, 7, 2, 32, b, bt);
    assert_memory_equal(a, b, sizeof a);
    for (size_t i = 0; i < 31; i++) assert_int_equal(at[i], a[i + 1]);
    lm_data_train_batch(&d, 6, 7, 2, 32, b, bt);
    assert_memory_not_equal(a, b, sizeof a);
    /* validation windows: consecutive, in the last 10% */
    size_t nw = lm_data_val_windows(&d, 32, 1 << 20);
    assert_int_equal(nw, (d.n - d.n_train - 1) / 32);
    lm_data_val_batch(&d, 32, 1, nw, 2, a, at);
    for (size_t i = 0; i < 64; i++) assert_int_equal(a[i], d.bytes[d.n_train + 32 + i]);
    lm_data_val_batch(&d, 32, nw - 1, nw, 2, a, at);
    for (size_t i = 32; i < 64; i++) assert_int_equal(at[i], -1);   /* past the last window */
    lm_data_free(&d);
}

/* ---- the command line -------------------------------------------------------------------------- */
#define ARGS(...) ((const char *const[]){ __VA_ARGS__, NULL })

/* exit 2, nothing on stdout, one stderr line with `words`, no file created */
static void bad(const char *const *args, const char *words)
{
    int before = count_entries(dir);
    run_cli_result r;
    run_cli(args, dir, 60, &r);
    if (r.code != 2 || r.out[0] || !strstr(r.err, words) || strchr(r.err, '\n') != r.err +
        strlen(r.err) - 1)
        fail_msg("ropekit train %s ...: exit %d, stdout '%.200s', stderr '%.300s' (expected exit 2 "
                 "and one line with '%s')", args[1], r.code, r.out, r.err, words);
    assert_int_equal(count_entries(dir), before);
}

static void test_cli_errors(void **state)
{
    (void)state;
    write_file(P("empty.txt"), "", 0);
    bad(ARGS("train", "--data", "missing.txt", "--steps", "2"), "missing.txt");
    bad(ARGS("train", "--data", "empty.txt", "--steps", "2", "--out", "o.tsv"), "is empty");
    bad(ARGS("train", "--variant", "nosuch"), "unknown variant 'nosuch'");
    bad(ARGS("train", "--variant", "rpe-fft", "--data", "text.txt"), "relative bias");
    bad(ARGS("train", "--resume"), "--resume needs --ckpt");
    bad(ARGS("train", "--compare", "softmax", "--seeds", "2"), "--compare needs --dir");
    bad(ARGS("train", "--compare", "softmax,nosuch", "--dir", "cmp"), "unknown variant");
    bad(ARGS("train", "--compare", "softmax:bogus", "--dir", "cmp"), "unknown position encoding");
    bad(ARGS("train", "--compare", "softmax,softmax", "--dir", "cmp"), "given twice");
    bad(ARGS("train", "--task", "shift:70", "--ctx", "64"), "below --ctx");
    bad(ARGS("train", "--task", "copy:3"), "unknown task");
    bad(ARGS("train", "--d-model", "30", "--heads", "4"), "multiple of --heads");
    bad(ARGS("train", "--data", "text.txt", "--ctx", "8192", "--steps", "2"), "too short");
    bad(ARGS("train", "--eval", "missing.ckpt"), "missing.ckpt");
    bad(ARGS("train", "--eval", "text.txt"), "not a ropekit checkpoint");
    bad(ARGS("train", "--eval", "x.ckpt", "--lr", "0.1"), "--lr does not apply to --eval");
    bad(ARGS("train", "--lengths", "1,2"), "--lengths and --scalings belong");
    bad(ARGS("train", "--jobs", "2"), "belong to --compare");
    bad(ARGS("train", "--pe", "absolute"), "unknown position encoding 'absolute'");
    bad(ARGS("train", "--compare", "softmax,softmax-rope", "--dir", "cmp", "--steps", "10",
             "--eval-every", "3", "--report-step", "4"), "not an evaluated step");
    bad(ARGS("train", "--compare", "softmax", "--dir", "cmp", "--data", "text.txt", "--lengths",
             "1,0"), "--lengths");
    bad(ARGS("train", "--compare", "softmax-rope", "--dir", "cmp", "--data", "text.txt",
             "--ctx", "256", "--lengths", "1,64"), "more than the validation part");
}

/* --rope-config: the RoPE arms take the file's rope_theta, partial_rotary_factor and pairing
 * (recorded in the checkpoint, so --eval rebuilds them and a --resume without the file is
 * another configuration); a scaled rotation, another head width, a partial rotation on the
 * features and --eval with the file are refused. */
static void test_rope_config(void **state)
{
    (void)state;
#define ROPE_JSON(extra) "{\"model_type\": \"gpt_neox\", \"hidden_size\": 16, "          \
    "\"num_attention_heads\": 2, \"rope_theta\": 500.0, \"partial_rotary_factor\": 0.5, "   \
    "\"max_position_embeddings\": 64" extra "}"
    static const char ok[] = ROPE_JSON(""), wide[] = ROPE_JSON(", \"head_dim\": 16");
    static const char scaled[] = ROPE_JSON(", \"rope_scaling\": {\"rope_type\": \"linear\", "
                                           "\"factor\": 2.0}");
#undef ROPE_JSON
    write_file(P("ok.json"), ok, strlen(ok));
    write_file(P("wide.json"), wide, strlen(wide));
    write_file(P("scaled.json"), scaled, strlen(scaled));
#define RC_ARGS(...) ARGS("train", "--task", "shift:2:8", "--ctx", "16", "--d-model", "16",      \
    "--heads", "2", "--layers", "1", "--batch", "4", "--steps", "20", "--eval-every", "10",     \
    "--val-tokens", "64", "--threads", "1", __VA_ARGS__)
    bad(RC_ARGS("--rope-config", "scaled.json"), "scales its rotation (linear)");
    bad(RC_ARGS("--rope-config", "wide.json"), "head width of 16");
    bad(RC_ARGS("--rope-config", "missing.json"), "missing.json");
    bad(RC_ARGS("--variant", "performer-rope-features", "--rope-config", "ok.json"),
        "rotates the FAVOR+ features");
    bad(ARGS("train", "--eval", "x.ckpt", "--rope-config", "ok.json"), "does not apply to --eval");
    bad(RC_ARGS("--variant", "softmax", "--rope-config", "ok.json"), "variant 'softmax' has no RoPE");
    bad(ARGS("train", "--compare", "softmax,performer", "--dir", "cmp", "--d-model", "16",
             "--heads", "2", "--rope-config", "ok.json"),
        "no arm of --compare has RoPE");
    run_cli_result r;
    assert_int_equal(run_cli(RC_ARGS("--out", "plain.tsv"), dir, 120, &r), 0);
    assert_int_equal(run_cli(RC_ARGS("--rope-config", "ok.json", "--out", "file.tsv", "--ckpt",
                                     "rc.ckpt"), dir, 120, &r), 0);
    /* the file changed the rotation, so the training */
    size_t na = 0, nb = 0;
    unsigned char *a = read_file(P("plain.tsv"), &na);
    unsigned char *b = read_file(P("file.tsv"), &nb);
    assert_true(a && b && na > 0 && nb > 0);
    assert_false(na == nb && memcmp(a, b, na) == 0);
    free(a);
    free(b);
    /* the checkpoint carries it: --eval runs without the file, --resume without it refuses */
    assert_int_equal(run_cli(ARGS("train", "--eval", "rc.ckpt", "--lengths", "1", "--scalings",
                                  "none"), dir, 120, &r), 0);
    bad(RC_ARGS("--ckpt", "rc.ckpt", "--resume"), "attn.rope_style");
    assert_int_equal(run_cli(RC_ARGS("--rope-config", "ok.json", "--ckpt", "rc.ckpt", "--resume"),
                             dir, 120, &r), 0);
    assert_non_null(strstr(r.out, "rope_config=ok.json rope_base=500 rope_rotary_dim=4 "
                                  "rope_style=half"));
#undef RC_ARGS
    unlink(P("ok.json")); unlink(P("wide.json")); unlink(P("scaled.json"));
    unlink(P("plain.tsv")); unlink(P("file.tsv")); unlink(P("rc.ckpt"));
}

/* kill -9 between checkpoints, then --resume: the same final checkpoint as an unbroken run */
static void test_kill_resume(void **state)
{
    (void)state;
#define TRAIN_ARGS(ckpt, ...) ARGS("train", "--task", "shift:2:8", "--ctx", "16", "--d-model", \
    "16", "--heads", "2", "--layers", "1", "--batch", "4", "--steps", "600", "--eval-every",    \
    "100", "--val-tokens", "64", "--ckpt", ckpt, "--ckpt-every", "25", __VA_ARGS__)
    run_cli_result r;
    assert_int_equal(run_cli(TRAIN_ARGS("full.ckpt", "--threads", "2"), dir, 120, &r), 0);
    const int n0 = count_entries(dir);
    pid_t pid = run_cli_start(TRAIN_ARGS("killed.ckpt", "--threads", "1"), dir);
    assert_true(pid > 0);
    /* wait for a checkpoint past step 50, then kill -9 at once */
    lm_ckpt_info info;
    struct timespec ms = { 0, 2000000 };
    int seen = 0;
    for (int i = 0; i < 20000 && !seen; i++) {
        seen = lm_ckpt_peek(P("killed.ckpt"), &info) == RK_OK && info.step >= 50;
        if (!seen) nanosleep(&ms, NULL);
    }
    assert_true(seen);
    assert_int_equal(kill(pid, SIGKILL), 0);
    int code = run_cli_wait(pid, 60);
    /* the run may have finished just before the kill on a fast machine: both are fine */
    assert_true(code == 128 + SIGKILL || code == 0);
    assert_rk_ok(lm_ckpt_peek(P("killed.ckpt"), &info));
    assert_int_equal(info.step % 25, 0);
    printf("  killed after the checkpoint of step %llu, which is whole\n",
           (unsigned long long)info.step);
    /* killed.ckpt, and the temporary file of a checkpoint the kill interrupted (if it did) */
    int n = count_entries(dir);
    assert_true(n == n0 + 1 || n == n0 + 2);
    assert_int_equal(run_cli(TRAIN_ARGS("killed.ckpt", "--resume", "--threads", "2"), dir, 120,
                             &r), 0);
    assert_int_equal(count_entries(dir), n0 + 1);   /* --resume removed it */
    assert_non_null(strstr(r.out, "resumed from step"));
    size_t la, lb;
    unsigned char *a = read_file(P("full.ckpt"), &la), *b = read_file(P("killed.ckpt"), &lb);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    free(a);
    free(b);
    unlink(P("full.ckpt"));
    unlink(P("killed.ckpt"));
}

/* --compare end to end on a tiny model, then --resume (nothing to redo) and --eval */
static void test_compare(void **state)
{
    (void)state;
#define CMP_ARGS(...) ARGS("train", "--compare", "softmax,softmax-rope,uniform", "--seeds", "2",  \
    "--dir", "cmp", "--data", "text.txt", "--ctx", "16", "--d-model", "16", "--heads", "2",      \
    "--layers", "1", "--batch", "4", "--steps", "20", "--eval-every", "10", "--val-tokens",     \
    "128", "--lengths", "1,2", "--scalings", "none,yarn", __VA_ARGS__)
    run_cli_result r;
    if (run_cli(CMP_ARGS("--threads", "2"), dir, 300, &r) != 0)
        fail_msg("compare: exit %d: %s", r.code, r.err);
    static const char *const files[] = { "runs.tsv", "extrapolation.tsv", "timing.tsv",
                                         "curves.tsv", "paired.tsv", "paired_seeds.tsv",
                                         "claims.tsv", "extrapolation_summary.tsv",
                                         "ckpt/softmax-s1.ckpt", "ckpt/softmax-rope-s2.ckpt" };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[700];
        snprintf(p, sizeof p, "cmp/%s", files[i]);
        struct stat st;
        if (stat(P(p), &st) != 0 || st.st_size == 0) fail_msg("compare: no %s", p);
    }
    assert_non_null(strstr(r.out, "claim: RoFormer trains faster than absolute positions: "));
    assert_non_null(strstr(r.out, "softmax-rope - softmax:"));
    size_t len;
    char *claims = (char *)read_file(P("cmp/claims.tsv"), &len);
    claims = realloc(claims, len + 1);
    claims[len] = '\0';
    assert_non_null(strstr(claims, "softmax\tRoFormer trains faster than absolute positions\t1\t"
                                   "softmax-rope\tsoftmax\t20\t2\t"));
    free(claims);
    /* rows: 3 arms x 2 seeds x 3 evaluations (steps 0, 10, 20) */
    char *runs = (char *)read_file(P("cmp/runs.tsv"), &len);
    size_t rows = 0;
    for (size_t i = 0; i < len; i++) rows += runs[i] == '\n' && i + 1 < len && runs[i + 1] != '#';
    free(runs);
    assert_int_equal(rows, 1 + 18);   /* header + rows */
    /* extrapolation: softmax (learned) 1x only; softmax-rope 2 lengths x 2 scalings; uniform
     * (learned) 1x */
    char *ext = (char *)read_file(P("cmp/extrapolation.tsv"), &len);
    ext = realloc(ext, len + 1);
    ext[len] = '\0';
    assert_non_null(strstr(ext, "softmax-rope\t2\tyarn\t2\t32\t"));
    assert_null(strstr(ext, "softmax\t1\tnone\t2\t"));
    free(ext);
    /* resume: everything is done, the tables are kept */
    assert_int_equal(run_cli(CMP_ARGS("--resume"), dir, 120, &r), 0);
    assert_null(strstr(r.out, "starting at step"));
    /* the same run with 1 thread gives the same checkpoints */
    assert_int_equal(run_cli(ARGS("train", "--compare", "softmax-rope", "--seeds", "1", "--dir",
                                  "cmp1", "--data", "text.txt", "--ctx", "16", "--d-model", "16",
                                  "--heads", "2", "--layers", "1", "--batch", "4", "--steps", "20",
                                  "--eval-every", "10", "--val-tokens", "128", "--lengths", "1",
                                  "--threads", "1"), dir, 120, &r), 0);
    size_t la, lb;
    unsigned char *a = read_file(P("cmp/ckpt/softmax-rope-s1.ckpt"), &la);
    unsigned char *b = read_file(P("cmp1/ckpt/softmax-rope-s1.ckpt"), &lb);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    free(a);
    free(b);
    /* --eval of a checkpoint */
    assert_int_equal(run_cli(ARGS("train", "--eval", "cmp/ckpt/softmax-rope-s1.ckpt", "--data",
                                  "text.txt", "--lengths", "1,4", "--scalings", "none,linear",
                                  "--val-tokens", "128", "--out", "eval.tsv"), dir, 120, &r), 0);
    char *ev = (char *)read_file(P("eval.tsv"), &len);
    ev = realloc(ev, len + 1);
    ev[len] = '\0';
    assert_non_null(strstr(ev, "softmax-rope\t1\tlinear\t4\t64\t"));
    free(ev);
    /* a run that fails in its own process (--jobs 2): the parent names it and exits 2 */
    assert_int_equal(mkdir(P("cmpf"), 0700), 0);
    assert_int_equal(mkdir(P("cmpf/ckpt"), 0700), 0);
    write_file(P("cmpf/ckpt/softmax-s1.ckpt"), "not a checkpoint", 16);
    run_cli(ARGS("train", "--compare", "softmax,softmax-rope", "--seeds", "1", "--dir", "cmpf",
                 "--data", "text.txt", "--ctx", "16", "--d-model", "16", "--heads", "2",
                 "--layers", "1", "--batch", "4", "--steps", "20", "--eval-every", "10",
                 "--val-tokens", "128", "--lengths", "1", "--jobs", "2", "--resume"), dir, 120,
            &r);
    assert_int_equal(r.code, 2);
    assert_non_null(strstr(r.err, "not a ropekit checkpoint"));
    assert_non_null(strstr(r.err, "the run [softmax seed 1] failed"));
    /* --eval with other data is refused */
    bad(ARGS("train", "--eval", "cmp/ckpt/softmax-rope-s1.ckpt"), "other data");
    unlink(P("eval.tsv"));
}

/* plots/train.sh: figures from a tiny comparison, a redraw (PLOT_ONLY=1), and a failing gnuplot
 * that leaves none of the figures behind */
static void test_plots(void **state)
{
    (void)state;
    static const char *const figs[] = { "bpc", "paired", "extrapolation", "timing" };
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd '%s' && ROPEKIT='%s' OUTDIR='%s/plt' sh '%s/../plots/train.sh' "
             "--compare softmax,softmax-rope --seeds 2 --data text.txt --ctx 16 --d-model 16 "
             "--heads 2 --layers 1 --batch 4 --steps 10 --eval-every 5 --val-tokens 64 --lengths "
             "1,2 > plt.log 2>&1", dir, RK_CLI_PATH, dir, RK_TESTS_DIR);
    int st = system(cmd);
    if (st != 0) fail_msg("plots/train.sh: exit %d (log: %s/plt.log)", st, dir);
    for (size_t i = 0; i < 4; i++)
        for (int k = 0; k < 2; k++) {
            char f[128];
            snprintf(f, sizeof f, "plt/%s.%s", figs[i], k ? "svg" : "png");
            struct stat sb;
            if (stat(P(f), &sb) != 0 || sb.st_size < 1000) fail_msg("plots/train.sh: no %s", f);
        }
    struct stat sb;
    assert_int_equal(stat(P("plt/summary.txt"), &sb), 0);
    /* the redraw alone */
    snprintf(cmd, sizeof cmd, "cd '%s' && PLOT_ONLY=1 OUTDIR='%s/plt' sh '%s/../plots/train.sh' "
             "> plt.log 2>&1", dir, dir, RK_TESTS_DIR);
    assert_int_equal(system(cmd), 0);
    /* a gnuplot that fails: the script fails and no figure stays */
    assert_int_equal(mkdir(P("bin"), 0700), 0);
    write_file(P("bin/gnuplot"), "#!/bin/sh\nexit 1\n", 17);
    assert_int_equal(chmod(P("bin/gnuplot"), 0700), 0);
    snprintf(cmd, sizeof cmd, "cd '%s' && PATH='%s/bin':\"$PATH\" PLOT_ONLY=1 OUTDIR='%s/plt' "
             "sh '%s/../plots/train.sh' > plt.log 2>&1", dir, dir, dir, RK_TESTS_DIR);
    assert_true(system(cmd) != 0);
    for (size_t i = 0; i < 4; i++) {
        char f[128];
        snprintf(f, sizeof f, "plt/%s.png", figs[i]);
        assert_true(stat(P(f), &sb) != 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_bits),
        cmocka_unit_test(test_checkpoint_errors),
        cmocka_unit_test(test_shift_task),
        cmocka_unit_test(test_data),
        cmocka_unit_test(test_cli_errors),
        cmocka_unit_test(test_rope_config),
        cmocka_unit_test(test_kill_resume),
        cmocka_unit_test(test_compare),
        cmocka_unit_test(test_plots),
    };
    return cmocka_run_group_tests_name("train", tests, setup, teardown);
}
