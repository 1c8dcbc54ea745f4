/* RoPE exactly as Hugging Face transformers defines it (issue 15): golden vectors for every rope
 * type, the config.json reader (rk_rope_hf_*) and the command line's --rope-config, --seq-len,
 * --print-freqs and the new --scaling specs.
 *
 * Golden vectors: tests/data/rope_hf/golden.inc, written by tests/data/rope_hf/gen_golden.py,
 * an independent float64 implementation in plain Python of the formulas of transformers'
 * modeling_rope_utils.py (cited there per function) applied to the config.json files of
 * tests/data/rope_hf/ (each case names its file, its sequence length and its formula). Checked:
 *   frequencies and attention factor: 1e-12 relative;
 *   the float64 rotation at two positions: 1e-12 relative, plus the angle's own rounding
 *     (the two codes form pos * theta separately: |pos| theta_max 2^-51 of |x|);
 *   the float32 rotation: within float rounding of the golden values (8 u32 of |x| m).
 */
#include "check.h"
#include "rk_internal.h"     /* rk__alloc_fail_after */
#include "run_cli.h"

#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <gsl/gsl_errno.h>

#ifndef RK_TESTS_DIR
#error "RK_TESTS_DIR must name the tests directory (the Makefile defines it)"
#endif
#define DATA RK_TESTS_DIR "/data/rope_hf/"

#define U32 (FLT_EPSILON / 2)
#define U64 (DBL_EPSILON / 2)

typedef struct {
    const char *name, *file;     /* file "": the yarn-paper case (not an HF type)            */
    size_t      seq_len, head, rot;
    int         interleaved;
    double      att;             /* attention factor                                         */
    double      theta[64];       /* rot / 2 frequencies                                      */
    int64_t     pos[2];
    double      y1[128], y2[128]; /* x rotated at pos[0], pos[1]                             */
} golden_case;

static const golden_case golden[] = {
#include "data/rope_hf/golden.inc"
};
#define N_GOLDEN (sizeof golden / sizeof golden[0])

/* The input of every case: x_j = ((37 j) mod 23 - 11) / 8, exact in float32. */
static double xin(size_t j) { return (double)((long)((37 * j) % 23) - 11) / 8.0; }

/* ---- temporary directory -------------------------------------------------------------------- */
static char tmp_dir[512];

static const char *P(const char *name)
{
    static char ring[16][700];
    static unsigned next;
    char *b = ring[next++ % 16];
    snprintf(b, sizeof ring[0], "%s/%s", tmp_dir, name);
    return b;
}

static int setup(void **state)
{
    (void)state;
    gsl_set_error_handler_off();
    const char *t = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/ropekit-ropehf-XXXXXX", t && *t ? t : "/tmp");
    return mkdtemp(tmp_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    DIR *d = opendir(tmp_dir);
    if (d) {
        struct dirent *e;
        char p[1024];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(p, sizeof p, "%s/%s", tmp_dir, e->d_name);
                unlink(p);
            }
        closedir(d);
    }
    rmdir(tmp_dir);
    return 0;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* ---- golden vectors, library ---------------------------------------------------------------- */

static void check_rotation(const golden_case *g, const rk_rope *r, int k)
{
    size_t d = g->head;
    const double *want = k ? g->y2 : g->y1;
    double x[128], y[128], thmax = 0.0;
    float xf[128], yf[128];
    for (size_t j = 0; j < d; j++) { x[j] = xin(j); xf[j] = (float)x[j]; }
    for (size_t i = 0; i < g->rot / 2; i++) thmax = fmax(thmax, g->theta[i]);
    double ap = fabs((double)g->pos[k]), xmax = 11.0 / 8.0 * 2.0;
    rk_matd X = rk_matd_view(x, 1, d, d), Y = rk_matd_view(y, 1, d, d);
    assert_rk_ok(rk_rope_apply_d(r, &X, &Y, g->pos[k], NULL, 0));
    double atol = (1e-12 + ap * thmax * 4.0 * U64) * xmax * g->att;
    assert_allclose(y, want, d, 1e-12, atol);
    rk_mat XF = rk_mat_view(xf, 1, d, d), YF = rk_mat_view(yf, 1, d, d);
    assert_rk_ok(rk_rope_apply(r, &XF, &YF, g->pos[k], NULL, 0));
    double yd[128];
    for (size_t j = 0; j < d; j++) yd[j] = yf[j];
    assert_allclose(yd, want, d, 0.0, 8.0 * U32 * xmax * g->att + atol);
    for (size_t j = g->rot; j < d; j++) assert_true(y[j] == x[j] && yf[j] == xf[j]);
}

static void test_golden(void **state)
{
    (void)state;
    double worst = 0.0;
    for (size_t c = 0; c < N_GOLDEN; c++) {
        const golden_case *g = &golden[c];
        rk_rope_hf h = { 0 };
        rk_rope_config cfg;
        if (g->file[0]) {
            char path[600];
            snprintf(path, sizeof path, "%s%s", DATA, g->file);
            assert_rk_ok(rk_rope_hf_load(&h, path));
            assert_int_equal(h.head_dim, g->head);
            cfg = h.cfg;
        } else {
            cfg = (rk_rope_config){ .dim = 128, .style = RK_ROPE_HALF,
                                    .scaling = RK_SCALE_YARN_PAPER, .factor = 4.0,
                                    .orig_ctx = 4096.0 };
        }
        cfg.seq_len = g->seq_len;
        assert_int_equal(cfg.dim, g->head);
        assert_int_equal(cfg.style, g->interleaved ? RK_ROPE_INTERLEAVED : RK_ROPE_HALF);
        rk_rope *r = NULL;
        assert_rk_ok(rk_rope_create(&r, &cfg));
        assert_int_equal(rk_rope_get_config(r)->rotary_dim, g->rot);
        print_message("golden %-16s %-10s r = %3zu, attention factor %.17g\n", g->name,
                      rk_rope_scaling_name(cfg.scaling), g->rot, rk_rope_mscale(r));
        assert_allclose(rk_rope_freqs(r), g->theta, g->rot / 2, 1e-12, 0.0);
        for (size_t i = 0; i < g->rot / 2; i++)
            worst = fmax(worst, fabs(rk_rope_freqs(r)[i] - g->theta[i]) / g->theta[i]);
        double m = rk_rope_mscale(r);
        assert_allclose(&m, &g->att, 1, 1e-12, 0.0);
        check_rotation(g, r, 0);
        check_rotation(g, r, 1);
        rk_rope_destroy(r);
        rk_rope_hf_free(&h);
    }
    print_message("golden frequencies: worst relative difference %.3g (bound 1e-12)\n", worst);
}

/* What each file is, as the reader sees it. */
static void test_golden_files(void **state)
{
    (void)state;
    static const struct { const char *file, *type; rk_rope_scaling sc; double base, factor; } f[] = {
        { "default_llama2.json", "default", RK_SCALE_NONE, 10000.0, 1.0 },
        { "default_partial.json", "default", RK_SCALE_NONE, 10000.0, 1.0 },
        { "linear.json", "linear", RK_SCALE_LINEAR, 10000.0, 4.0 },
        { "dynamic.json", "dynamic", RK_SCALE_DYNAMIC, 10000.0, 2.0 },
        { "yarn_f4.json", "yarn", RK_SCALE_YARN, 10000.0, 4.0 },
        { "yarn_f16.json", "yarn", RK_SCALE_YARN, 10000.0, 16.0 },
        { "yarn_deepseek.json", "yarn", RK_SCALE_YARN, 10000.0, 0.0 },   /* inferred at create */
        { "yarn_notrunc.json", "yarn", RK_SCALE_YARN, 150000.0, 32.0 },
        { "longrope.json", "longrope", RK_SCALE_LONGROPE, 10000.0, 0.0 },
        { "llama3.json", "llama3", RK_SCALE_LLAMA3, 500000.0, 8.0 },
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s%s", DATA, f[i].file);
        rk_rope_hf h;
        assert_rk_ok(rk_rope_hf_load(&h, path));
        assert_string_equal(h.rope_type, f[i].type);
        assert_int_equal(h.cfg.scaling, f[i].sc);
        assert_true(h.cfg.base == f[i].base);
        assert_true(h.cfg.factor == f[i].factor || f[i].sc == RK_SCALE_NONE);
        rk_rope_hf_free(&h);
        rk_rope_hf_free(&h);                                 /* twice: safe */
    }
    /* the details the golden cases rely on */
    rk_rope_hf h;
    assert_rk_ok(rk_rope_hf_load(&h, DATA "default_partial.json"));
    assert_int_equal(h.head_dim, 80);
    assert_int_equal(h.cfg.rotary_dim, 32);
    assert_true(h.partial_rotary_factor == 0.4);
    rk_rope_hf_free(&h);
    assert_rk_ok(rk_rope_hf_load(&h, DATA "yarn_deepseek.json"));
    assert_int_equal(h.head_dim, 64);                        /* qk_rope_head_dim */
    assert_int_equal(h.cfg.style, RK_ROPE_INTERLEAVED);
    assert_true(h.cfg.max_pos == 163840.0 && h.cfg.orig_ctx == 4096.0);
    assert_true(h.cfg.mscale == 1.0 && h.cfg.mscale_all_dim == 0.8);
    rk_rope_hf_free(&h);
    assert_rk_ok(rk_rope_hf_load(&h, DATA "yarn_notrunc.json"));
    assert_int_equal(h.cfg.no_truncate, 1);
    rk_rope_hf_free(&h);
    assert_rk_ok(rk_rope_hf_load(&h, DATA "longrope.json"));
    assert_true(h.cfg.orig_ctx == 4096.0 && h.cfg.max_pos == 131072.0);
    assert_non_null(h.cfg.short_factor);
    assert_true(h.cfg.short_factor[1] == 1.0125 && h.cfg.long_factor[47] == 1.0 + 0.08 * 47 * 47 / 4.0);
    rk_rope_hf_free(&h);
    assert_null(h.factors);
}

/* ---- the reader: variants and errors -------------------------------------------------------- */

static void parse_ok(const char *json, rk_rope_hf *h)
{
    int rc = rk_rope_hf_parse(h, json, strlen(json), "t.json");
    if (rc) fail_msg("%s: %s", json, rk_last_error());
    assert_string_equal(rk_last_error(), "");
}

static void test_reader_variants(void **state)
{
    (void)state;
    rk_rope_hf h;
    parse_ok("{\"head_dim\": 64}", &h);                       /* everything defaults */
    assert_string_equal(h.rope_type, "default");
    assert_true(h.cfg.base == 10000.0 && h.cfg.dim == 64 && h.cfg.rotary_dim == 64);
    assert_int_equal(h.cfg.style, RK_ROPE_HALF);
    rk_rope_hf_free(&h);
    /* GPT-NeoX: rotary_pct, rotary_emb_base */
    parse_ok("{\"model_type\": \"gpt_neox\", \"hidden_size\": 6144, \"num_attention_heads\": 64,"
             " \"rotary_pct\": 0.25, \"rotary_emb_base\": 20000}", &h);
    assert_true(h.head_dim == 96 && h.cfg.rotary_dim == 24 && h.cfg.base == 20000.0);
    rk_rope_hf_free(&h);
    /* GPT-J: n_embd / n_head, absolute rotary_dim, interleaved */
    parse_ok("{\"model_type\": \"gptj\", \"n_embd\": 4096, \"n_head\": 16, \"rotary_dim\": 64}",
             &h);
    assert_true(h.head_dim == 256 && h.cfg.rotary_dim == 64 && h.partial_rotary_factor == 0.25);
    assert_int_equal(h.cfg.style, RK_ROPE_INTERLEAVED);
    rk_rope_hf_free(&h);
    /* head_dim null: hidden_size // num_attention_heads (integer division, as HF) */
    parse_ok("{\"head_dim\": null, \"hidden_size\": 1000, \"num_attention_heads\": 7}", &h);
    assert_int_equal(h.head_dim, 142);
    rk_rope_hf_free(&h);
    /* rope_parameters' rope_theta wins over the top level's (setdefault) */
    parse_ok("{\"head_dim\": 64, \"rope_theta\": 500, \"rope_parameters\": {\"rope_type\": "
             "\"default\", \"rope_theta\": 1000000}}", &h);
    assert_true(h.cfg.base == 1e6);
    rk_rope_hf_free(&h);
    /* both dictionaries, equal; rope_type and type, equal; "su" is longrope */
    parse_ok("{\"head_dim\": 4, \"max_position_embeddings\": 8192, "
             "\"original_max_position_embeddings\": 2048, \"rope_scaling\": {\"type\": \"su\", "
             "\"rope_type\": \"su\", \"short_factor\": [1, 2], \"long_factor\": [3, 4]}, "
             "\"rope_parameters\": {\"type\": \"su\", \"rope_type\": \"su\", "
             "\"short_factor\": [1, 2], \"long_factor\": [3, 4]}}", &h);
    assert_string_equal(h.rope_type, "longrope");
    assert_true(h.cfg.long_factor[1] == 4.0 && h.cfg.orig_ctx == 2048.0);
    rk_rope_hf_free(&h);
    /* DeepSeek-V3 with rope_interleave false: rotate_half */
    parse_ok("{\"model_type\": \"deepseek_v3\", \"qk_rope_head_dim\": 64, \"head_dim\": 192, "
             "\"rope_interleave\": false}", &h);
    assert_true(h.head_dim == 64 && h.cfg.style == RK_ROPE_HALF);
    rk_rope_hf_free(&h);
    /* yarn: attention_factor given; beta_fast 0 and null are the defaults (HF's `or`) */
    parse_ok("{\"head_dim\": 64, \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 8, "
             "\"original_max_position_embeddings\": 1024, \"attention_factor\": 1.5, "
             "\"beta_fast\": 0, \"beta_slow\": null, \"truncate\": true}}", &h);
    rk_rope *r;
    assert_rk_ok(rk_rope_create(&r, &h.cfg));
    assert_true(rk_rope_mscale(r) == 1.5);
    assert_true(rk_rope_get_config(r)->beta_fast == 32.0 && rk_rope_get_config(r)->beta_slow == 1.0);
    rk_rope_destroy(r);
    rk_rope_hf_free(&h);
    /* dynamic accepts (and ignores, as HF) original_max_position_embeddings */
    parse_ok("{\"head_dim\": 64, \"max_position_embeddings\": 4096, \"rope_scaling\": "
             "{\"rope_type\": \"dynamic\", \"factor\": 2, \"original_max_position_embeddings\": "
             "1024}}", &h);
    assert_true(h.cfg.max_pos == 4096.0);
    rk_rope_hf_free(&h);
    /* rope_scaling null and rope_parameters null: default */
    parse_ok("{\"head_dim\": 8, \"rope_scaling\": null, \"rope_parameters\": null}", &h);
    assert_int_equal(h.cfg.scaling, RK_SCALE_NONE);
    rk_rope_hf_free(&h);
}

static void expect_parse_error(const char *json, int code, const char *want)
{
    rk_rope_hf h;
    memset(&h, 0x5a, sizeof h);
    int rc = rk_rope_hf_parse(&h, json, strlen(json), "bad.json");
    if (rc != code)
        fail_msg("%s: returned %d (%s), expected %d: %s", json, rc, rk_strerror(rc), code,
                 rk_last_error());
    const char *msg = rk_last_error();
    if (!strstr(msg, want) || strncmp(msg, "bad.json: ", 10) != 0)
        fail_msg("%s: message '%s' does not start with the name or lacks '%s'", json, msg, want);
    assert_null(h.factors);                                  /* nothing left to free */
    assert_null(h.cfg.short_factor);
}

static void test_reader_errors(void **state)
{
    (void)state;
#define RS(body) "{\"head_dim\": 64, \"max_position_embeddings\": 8192, \"rope_scaling\": " body "}"
    expect_parse_error("", RK_EFORMAT, "not valid JSON");
    expect_parse_error("{\"head_dim\": 64,}", RK_EFORMAT, "line 1, column");
    expect_parse_error("[1, 2]", RK_EFORMAT, "expected a JSON object (a config.json), got an array");
    expect_parse_error("{\"head_dim\": 64, \"head_dim\": 64}", RK_EFORMAT, "duplicate");
    expect_parse_error("{}", RK_EFORMAT, "head_dim is missing");
    expect_parse_error("{\"hidden_size\": 64}", RK_EFORMAT, "num_attention_heads is missing");
    expect_parse_error("{\"head_dim\": \"64\"}", RK_EFORMAT, "head_dim: expected an integer, got a string");
    expect_parse_error("{\"head_dim\": 64.5}", RK_EFORMAT, "head_dim: expected an integer");
    expect_parse_error("{\"head_dim\": 0}", RK_EINVAL, "head_dim = 0 must be > 0");
    expect_parse_error("{\"head_dim\": 64, \"rope_theta\": \"1e4\"}", RK_EFORMAT,
                       "rope_theta: expected a number, got a string");
    expect_parse_error("{\"head_dim\": 64, \"rope_theta\": 1}", RK_EINVAL, "rope_theta = 1");
    expect_parse_error("{\"head_dim\": 64, \"rope_theta\": -5}", RK_EINVAL, "rope_theta = -5");
    expect_parse_error("{\"head_dim\": 64, \"rope_parameters\": {\"rope_theta\": true}}",
                       RK_EFORMAT, "rope_parameters.rope_theta: expected a number, got a boolean");
    expect_parse_error("{\"head_dim\": 64, \"partial_rotary_factor\": 1.5}", RK_EINVAL,
                       "partial_rotary_factor = 1.5 must be in (0, 1]");
    expect_parse_error("{\"head_dim\": 64, \"partial_rotary_factor\": 0.3}", RK_EINVAL,
                       "must be even");
    expect_parse_error("{\"head_dim\": 64, \"rotary_dim\": 80}", RK_EINVAL,
                       "rotary_dim = 80 exceeds the head width 64");
    expect_parse_error("{\"head_dim\": 64, \"rotary_dim\": 32, \"partial_rotary_factor\": 0.5}",
                       RK_EFORMAT, "keep one");
    expect_parse_error(RS("5"), RK_EFORMAT, "rope_scaling: expected an object or null, got an integer");
    expect_parse_error("{\"head_dim\": 64, \"rope_scaling\": {\"factor\": 2, \"rope_type\": "
                       "\"linear\"}, \"rope_parameters\": {\"factor\": 3, \"rope_type\": "
                       "\"linear\"}}", RK_EFORMAT, "both rope_parameters and rope_scaling");
    expect_parse_error("{\"head_dim\": 64, \"rope_parameters\": {\"full_attention\": "
                       "{\"rope_type\": \"default\"}, \"sliding_attention\": {\"rope_type\": "
                       "\"default\"}}}", RK_EUNSUP, "RoPE per layer type is not supported");
    expect_parse_error(RS("{\"rope_type\": \"mrope\"}"), RK_EUNSUP,
                       "rope_scaling.rope_type 'mrope' is not supported");
    expect_parse_error(RS("{\"type\": \"proportional\"}"), RK_EUNSUP,
                       "rope_scaling.type 'proportional' is not supported");
    expect_parse_error(RS("{\"rope_type\": 3}"), RK_EFORMAT,
                       "rope_scaling.rope_type: expected a string, got an integer");
    expect_parse_error(RS("{\"rope_type\": \"yarn\", \"type\": \"linear\"}"), RK_EFORMAT,
                       "disagree");
    expect_parse_error(RS("{\"rope_type\": \"default\", \"mrope_section\": [16, 24, 24]}"),
                       RK_EUNSUP, "rope_scaling.mrope_section: not a parameter of rope_type 'default'");
    expect_parse_error(RS("{\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 1, "
                          "\"high_freq_factor\": 4, \"beta_fast\": 32}"),
                       RK_EUNSUP, "rope_scaling.beta_fast: not a parameter of rope_type 'llama3'");
    expect_parse_error(RS("{\"rope_type\": \"linear\"}"), RK_EFORMAT, "rope_scaling.factor is missing");
    expect_parse_error(RS("{\"rope_type\": \"linear\", \"factor\": \"4\"}"), RK_EFORMAT,
                       "rope_scaling.factor: expected a number, got a string");
    expect_parse_error(RS("{\"rope_type\": \"linear\", \"factor\": -4}"), RK_EINVAL,
                       "rope_scaling.factor = -4 must be > 0");
    expect_parse_error("{\"head_dim\": 64, \"rope_scaling\": {\"rope_type\": \"dynamic\", "
                       "\"factor\": 2}}", RK_EFORMAT, "max_position_embeddings is missing");
    expect_parse_error("{\"head_dim\": 64, \"rope_scaling\": {\"rope_type\": \"yarn\", "
                       "\"original_max_position_embeddings\": 1024}}", RK_EFORMAT,
                       "rope_scaling.factor is missing and max_position_embeddings too");
    expect_parse_error("{\"head_dim\": 64, \"rope_scaling\": {\"rope_type\": \"yarn\", "
                       "\"factor\": 4}}", RK_EFORMAT,
                       "rope_scaling.original_max_position_embeddings is missing");
    expect_parse_error(RS("{\"rope_type\": \"yarn\", \"factor\": 4, \"truncate\": \"no\"}"),
                       RK_EFORMAT, "rope_scaling.truncate: expected true or false, got a string");
    expect_parse_error(RS("{\"rope_type\": \"yarn\", \"factor\": 4, \"beta_fast\": 1, "
                          "\"beta_slow\": 2}"), RK_EINVAL, "beta_fast > beta_slow");
    expect_parse_error(RS("{\"rope_type\": \"yarn\", \"factor\": 4, \"attention_factor\": 0}"),
                       RK_EINVAL, "rope_scaling.attention_factor = 0 must be > 0");
    expect_parse_error(RS("{\"rope_type\": \"yarn\", \"factor\": 4, \"mscale\": \"x\"}"),
                       RK_EFORMAT, "rope_scaling.mscale: expected a number");
    expect_parse_error(RS("{\"rope_type\": \"yarn\", \"factor\": 40, \"mscale\": -50, "
                          "\"mscale_all_dim\": 1}"), RK_EINVAL, "attn_factor");
    expect_parse_error(RS("{\"rope_type\": \"longrope\", \"short_factor\": [1, 2, 3], "
                          "\"long_factor\": [1]}"), RK_EFORMAT,
                       "rope_scaling.short_factor has 3 values; the rotary dimension 64 needs 32");
    expect_parse_error(RS("{\"rope_type\": \"longrope\", \"short_factor\": 1}"), RK_EFORMAT,
                       "rope_scaling.short_factor: expected a list of numbers");
    expect_parse_error("{\"head_dim\": 4, \"max_position_embeddings\": 10, \"rope_scaling\": "
                       "{\"rope_type\": \"longrope\", \"short_factor\": [1, 2]}}", RK_EFORMAT,
                       "rope_scaling.long_factor is missing");
    expect_parse_error("{\"head_dim\": 4, \"max_position_embeddings\": 10, \"rope_scaling\": "
                       "{\"rope_type\": \"longrope\", \"short_factor\": [1, 2], "
                       "\"long_factor\": [1, \"2\"]}}", RK_EFORMAT,
                       "rope_scaling.long_factor[1]: expected a number");
    expect_parse_error("{\"head_dim\": 4, \"max_position_embeddings\": 10, \"rope_scaling\": "
                       "{\"rope_type\": \"longrope\", \"short_factor\": [1, 0], "
                       "\"long_factor\": [1, 2]}}", RK_EINVAL, "rope_scaling.short_factor[1] = 0");
    expect_parse_error(RS("{\"rope_type\": \"llama3\", \"factor\": 8, \"high_freq_factor\": 4}"),
                       RK_EFORMAT, "rope_scaling.low_freq_factor is missing");
    expect_parse_error(RS("{\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 4, "
                          "\"high_freq_factor\": 4}"), RK_EINVAL, "must exceed low_freq_factor");
    expect_parse_error("{\"head_dim\": 64, \"max_position_embeddings\": 0}", RK_EINVAL,
                       "max_position_embeddings = 0 must be > 0");
    expect_parse_error(RS("{\"rope_type\": \"yarn\", \"factor\": 4, "
                          "\"original_max_position_embeddings\": -1}"), RK_EINVAL,
                       "rope_scaling.original_max_position_embeddings = -1 must be > 0");
    expect_parse_error("{\"head_dim\": 99999999999999999999999}", RK_EFORMAT, "not valid JSON");
    expect_parse_error("{\"head_dim\": 64, \"model_type\": 5}", RK_EFORMAT,
                       "model_type: expected a string");
    expect_parse_error("{\"model_type\": \"deepseek_v3\", \"head_dim\": 64, "
                       "\"rope_interleave\": 1}", RK_EFORMAT, "rope_interleave: expected true or false");
#undef RS
    /* NULL arguments */
    rk_rope_hf h;
    assert_rk_error(rk_rope_hf_parse(NULL, "{}", 2, "x"), RK_EINVAL);
    assert_rk_error(rk_rope_hf_parse(&h, NULL, 3, "x"), RK_EINVAL);
    assert_rk_error(rk_rope_hf_load(&h, NULL), RK_EINVAL);
    assert_rk_error(rk_rope_hf_load(NULL, "x"), RK_EINVAL);
    rk_rope_hf_free(NULL);
}

/* Files: missing, a directory, a FIFO (no hang), empty, too large; every allocation failing. */
static void test_reader_files(void **state)
{
    (void)state;
    rk_rope_hf h;
    assert_rk_error(rk_rope_hf_load(&h, P("missing.json")), RK_EIO);
    assert_non_null(strstr(rk_last_error(), "missing.json: cannot open"));
    assert_rk_error(rk_rope_hf_load(&h, tmp_dir), RK_EIO);
    assert_non_null(strstr(rk_last_error(), "is a directory"));
    assert_int_equal(mkfifo(P("fifo.json"), 0600), 0);
    assert_rk_error(rk_rope_hf_load(&h, P("fifo.json")), RK_EIO);
    assert_non_null(strstr(rk_last_error(), "is a FIFO"));
    write_text(P("empty.json"), "");
    assert_rk_error(rk_rope_hf_load(&h, P("empty.json")), RK_EFORMAT);
    assert_non_null(strstr(rk_last_error(), "empty.json: not valid JSON"));
    FILE *f = fopen(P("big.json"), "w");
    assert_non_null(f);
    assert_int_equal(fseek(f, (16L << 20) + 1, SEEK_SET), 0);
    fputc(' ', f);
    fclose(f);
    assert_rk_error(rk_rope_hf_load(&h, P("big.json")), RK_EFORMAT);
    assert_non_null(strstr(rk_last_error(), "too large"));
    /* allocation failures (the factor lists, the probe plan): clean RK_ENOMEM */
    for (long k = 0;; k++) {
        rk__alloc_fail_after(k);
        int rc = rk_rope_hf_load(&h, DATA "longrope.json");
        rk__alloc_fail_after(-1);
        if (rc == RK_OK) { rk_rope_hf_free(&h); break; }
        assert_int_equal(rc, RK_ENOMEM);
        assert_null(h.factors);
        assert_true(k < 20);
    }
}

/* ---- the command line ----------------------------------------------------------------------- */

static run_cli_result R;

static int runv(const char *const *args)
{
    return run_cli(args, tmp_dir, 60.0, &R);
}
#define RUN(...) runv((const char *const[]){ __VA_ARGS__, NULL })

static void expect_fail(const char *want)
{
    if (R.code != 2 || !strstr(R.err, want) || R.out[0])
        fail_msg("exit %d, stdout '%.200s', stderr '%s'; wanted exit 2 and '%s'", R.code, R.out,
                 R.err, want);
    /* one line */
    char *nl = strchr(R.err, '\n');
    assert_true(nl && nl[1] == '\0');
}

/* --print-freqs of every golden file (at the golden seq_len) against the golden thetas. */
static void test_cli_print_freqs(void **state)
{
    (void)state;
    for (size_t c = 0; c < N_GOLDEN; c++) {
        const golden_case *g = &golden[c];
        char path[600], sl[32];
        snprintf(path, sizeof path, "%s%s", DATA, g->file);
        snprintf(sl, sizeof sl, "%zu", g->seq_len);
        if (!g->file[0])
            RUN("rope", "--print-freqs", "--dim", "128", "--scaling", "yarn-paper:4:4096");
        else if (g->seq_len)
            RUN("rope", "--print-freqs", "--rope-config", path, "--seq-len", sl);
        else
            RUN("rope", "--print-freqs", "--rope-config", path);
        if (R.code) fail_msg("%s: exit %d: %s", g->name, R.code, R.err);
        char *line = strtok(R.out, "\n");
        assert_true(line && line[0] == '#');
        line = strtok(NULL, "\n");
        assert_string_equal(line, "pair\ttheta\twavelength\tdivisor\tattention_factor");
        size_t n = 0;
        while ((line = strtok(NULL, "\n"))) {
            size_t i;
            double th, wl, dv, att;
            assert_int_equal(sscanf(line, "%zu\t%lf\t%lf\t%lf\t%lf", &i, &th, &wl, &dv, &att), 5);
            assert_int_equal(i, n);
            assert_allclose(&th, &g->theta[i], 1, 1e-12, 0.0);
            double w = 2.0 * 3.14159265358979323846 / g->theta[i];
            assert_allclose(&wl, &w, 1, 1e-12, 0.0);
            assert_allclose(&att, &g->att, 1, 1e-12, 0.0);
            n++;
        }
        assert_int_equal(n, g->rot / 2);
    }
    /* the header names what was resolved */
    RUN("rope", "--print-freqs", "--rope-config", DATA "longrope.json", "--seq-len", "5000");
    assert_int_equal(R.code, 0);
    assert_non_null(strstr(R.out, "scaling=longrope"));
    assert_non_null(strstr(R.out, "seq_len=5000 factors=long"));
    RUN("rope", "--print-freqs", "--rope-config", DATA "yarn_deepseek.json");
    assert_non_null(strstr(R.out, "style=interleaved dim=64 rotary_dim=64 base=10000 factor=40 "));
    RUN("rope", "--print-freqs", "--rope-config", DATA "yarn_deepseek.json", "--style", "half");
    assert_non_null(strstr(R.out, "style=half"));
    /* the --scaling specs give what the library gives */
    static const char *const specs[] = { "dynamic:2:512", "llama3:8:64", "llama3:8:64:2:3",
                                         "yarn:4:100", "yarn-paper:4:100", "ntk:3" };
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
        RUN("rope", "--print-freqs", "--dim", "16", "--scaling", specs[k], "--base", "100");
        assert_int_equal(R.code, 0);
        rk_rope_config rc = { .dim = 16, .base = 100.0 };
        switch (k) {
        case 0: rc.scaling = RK_SCALE_DYNAMIC; rc.factor = 2; rc.max_pos = 512; break;
        case 1: rc.scaling = RK_SCALE_LLAMA3; rc.factor = 8; rc.orig_ctx = 64; break;
        case 2: rc.scaling = RK_SCALE_LLAMA3; rc.factor = 8; rc.orig_ctx = 64;
                rc.low_freq_factor = 2; rc.high_freq_factor = 3; break;
        case 3: rc.scaling = RK_SCALE_YARN; rc.factor = 4; rc.orig_ctx = 100; break;
        case 4: rc.scaling = RK_SCALE_YARN_PAPER; rc.factor = 4; rc.orig_ctx = 100; break;
        case 5: rc.scaling = RK_SCALE_NTK; rc.factor = 3; break;
        }
        rk_rope *r;
        assert_rk_ok(rk_rope_create(&r, &rc));
        char *line = strtok(R.out, "\n");
        line = strtok(NULL, "\n");
        for (size_t i = 0; i < 8; i++) {
            line = strtok(NULL, "\n");
            assert_non_null(line);
            size_t ii;
            double th;
            assert_int_equal(sscanf(line, "%zu\t%lf", &ii, &th), 2);
            assert_true(th == rk_rope_freqs(r)[i]);          /* %.17g round-trips */
        }
        rk_rope_destroy(r);
    }
}

static void save_x(const char *name, size_t n, size_t d, rk_dtype dt)
{
    rk_array a = { 0 };
    size_t shape[2] = { n, d };
    assert_rk_ok(rk_array_alloc(&a, dt, 2, shape));
    for (size_t t = 0; t < n; t++)
        for (size_t j = 0; j < d; j++) {
            double v = xin(j);
            if (dt == RK_F64) ((double *)a.data)[t * d + j] = v;
            else ((float *)a.data)[t * d + j] = (float)v;
        }
    assert_rk_ok(rk_npy_save(P(name), &a));
    rk_array_free(&a);
}

/* ropekit rope --rope-config on one row at each golden position: the golden rotation. The
 * length-dependent cases either take --seq-len, or (positions chosen so) the default length,
 * the position + 1, is the golden one. */
static void test_cli_rope_golden(void **state)
{
    (void)state;
    for (size_t c = 0; c < N_GOLDEN; c++) {
        const golden_case *g = &golden[c];
        if (!g->file[0]) continue;
        char path[600], sl[32], off[32];
        snprintf(path, sizeof path, "%s%s", DATA, g->file);
        snprintf(sl, sizeof sl, "%zu", g->seq_len);
        save_x("x.npy", 1, g->head, RK_F64);
        for (int k = 0; k < 2; k++) {
            snprintf(off, sizeof off, "%lld", (long long)g->pos[k]);
            int dep = g->seq_len != 0;
            int by_default = dep && (size_t)g->pos[k] + 1 == g->seq_len;
            if (dep && !by_default)
                RUN("rope", "--in", P("x.npy"), "--out", P("y.npy"), "--rope-config", path,
                    "--offset", off, "--seq-len", sl);
            else
                RUN("rope", "--in", P("x.npy"), "--out", P("y.npy"), "--rope-config", path,
                    "--offset", off);
            if (R.code) fail_msg("%s: exit %d: %s", g->name, R.code, R.err);
            rk_array y = { 0 };
            assert_rk_ok(rk_npy_load(P("y.npy"), &y));
            assert_int_equal(y.count, g->head);
            double ap = fabs((double)g->pos[k]), thmax = 0.0;
            for (size_t i = 0; i < g->rot / 2; i++) thmax = fmax(thmax, g->theta[i]);
            assert_allclose((const double *)y.data, k ? g->y2 : g->y1, g->head, 1e-12,
                            (1e-12 + ap * thmax * 4.0 * U64) * 2.75 * g->att);
            rk_array_free(&y);
        }
    }
    /* the default length: rows 0 .. 4095 of longrope take the short factors, a row at 4096
     * (sequence length 4097) switches every row to the long ones */
    save_x("x.npy", 2, 96, RK_F64);
    RUN("rope", "--in", P("x.npy"), "--out", P("a.npy"), "--rope-config", DATA "longrope.json",
        "--offset", "4094");                                  /* positions 4094, 4095 */
    assert_int_equal(R.code, 0);
    RUN("rope", "--in", P("x.npy"), "--out", P("b.npy"), "--rope-config", DATA "longrope.json",
        "--offset", "4095");                                  /* positions 4095, 4096 */
    assert_int_equal(R.code, 0);
    rk_array a = { 0 }, b = { 0 };
    assert_rk_ok(rk_npy_load(P("a.npy"), &a));
    assert_rk_ok(rk_npy_load(P("b.npy"), &b));
    const double *ya = a.data, *yb = b.data;                  /* row 1 of a, row 0 of b: 4095 */
    assert_true(memcmp(ya + 96, yb, 96 * sizeof(double)) != 0);
    for (size_t j = 0; j < 96; j++) {
        assert_allclose(&ya[96 + j], &golden[10].y2[j], 1, 1e-12, 1e-11);   /* short, 4095 */
        assert_allclose(&yb[96 + j], &golden[11].y2[j], 1, 1e-12, 1e-11);   /* long, 4096 */
    }
    assert_string_equal(golden[10].name, "longrope_short");
    assert_string_equal(golden[11].name, "longrope_long");
    rk_array_free(&a);
    rk_array_free(&b);
}

/* attend --rope qk --rope-config: the library's softmax with the file's RoPE (same bits). */
static void test_cli_attend(void **state)
{
    (void)state;
    size_t n = 6, d = 128;
    gsl_rng *rng = rk_test_rng(15);
    rk_array q = { 0 }, k = { 0 }, v = { 0 };
    size_t shape[2] = { n, d };
    rk_array *arr[3] = { &q, &k, &v };
    const char *names[3] = { "q.npy", "k.npy", "v.npy" };
    for (int i = 0; i < 3; i++) {
        assert_rk_ok(rk_array_alloc(arr[i], RK_F64, 2, shape));
        for (size_t j = 0; j < n * d; j++) ((double *)arr[i]->data)[j] = gsl_rng_uniform(rng) - 0.5;
        assert_rk_ok(rk_npy_save(P(names[i]), arr[i]));
    }
    gsl_rng_free(rng);
    RUN("attend", "--variant", "softmax", "--q", P("q.npy"), "--k", P("k.npy"), "--v",
        P("v.npy"), "--out", P("o.npy"), "--causal", "--rope", "qk", "--rope-config",
        DATA "yarn_f4.json", "--offset", "5000");
    if (R.code) fail_msg("exit %d: %s", R.code, R.err);
    rk_rope_hf h;
    assert_rk_ok(rk_rope_hf_load(&h, DATA "yarn_f4.json"));
    rk_attn_config ac = { .kind = RK_SOFTMAX, .n_q = n, .n_kv = n, .d = d, .causal = 1,
                          .rope = RK_ROPE_QK, .rope_cfg = h.cfg, .pos_offset = 5000 };
    rk_attn *p;
    assert_rk_ok(rk_attn_create(&p, &ac));
    double out[6 * 128];
    rk_matd Q = rk_matd_view(q.data, n, d, d), K = rk_matd_view(k.data, n, d, d);
    rk_matd V = rk_matd_view(v.data, n, d, d), O = rk_matd_view(out, n, d, d);
    assert_rk_ok(rk_attn_execute_d(p, &Q, &K, &V, &O, RK_ALL_KEYS));
    rk_array o = { 0 };
    assert_rk_ok(rk_npy_load(P("o.npy"), &o));
    assert_memory_equal(o.data, out, sizeof out);
    rk_attn_destroy(p);
    rk_rope_hf_free(&h);
    rk_array_free(&o);

    /* --rope features with a longrope file: its 96 rotated channels (48 factors) of the 256
     * features, whatever the feature width; --seq-len picks the long factors */
    RUN("attend", "--variant", "performer", "--q", P("q.npy"), "--k", P("k.npy"), "--v",
        P("v.npy"), "--out", P("o.npy"), "--rope", "features", "--rope-config",
        DATA "longrope.json", "--seq-len", "5000");
    if (R.code) fail_msg("exit %d: %s", R.code, R.err);
    assert_rk_ok(rk_rope_hf_load(&h, DATA "longrope.json"));
    rk_attn_config pc = { .kind = RK_PERFORMER, .n_q = n, .n_kv = n, .d = d, .seed = 1,
                          .rope = RK_ROPE_FEATURES, .rope_cfg = h.cfg };
    pc.rope_cfg.seq_len = 5000;
    assert_rk_ok(rk_attn_create(&p, &pc));
    assert_int_equal(rk_attn_get_config(p)->rope_cfg.rotary_dim, 96);
    assert_rk_ok(rk_attn_execute_d(p, &Q, &K, &V, &O, RK_ALL_KEYS));
    assert_rk_ok(rk_npy_load(P("o.npy"), &o));
    assert_memory_equal(o.data, out, sizeof out);
    rk_attn_destroy(p);
    rk_rope_hf_free(&h);
    rk_array_free(&o);
    rk_array_free(&q); rk_array_free(&k); rk_array_free(&v);
}

/* decay: the bound under any scaling, from a file as from the options. */
static void test_cli_decay(void **state)
{
    (void)state;
    char a[RUN_CLI_CAP];
    RUN("decay", "--rope-config", DATA "llama3.json", "--draws", "0", "--max-distance", "300",
        "--step", "7");
    assert_int_equal(R.code, 0);
    assert_non_null(strstr(R.out, "b500000_llama3_8_8192[base=500000 scaling=llama3 factor=8 "
                                  "orig_ctx=8192 low_freq_factor=1 high_freq_factor=4]"));
    snprintf(a, sizeof a, "%s", strstr(R.out, "\ndistance"));
    RUN("decay", "--dim", "128", "--base", "500000", "--scaling", "llama3:8:8192", "--draws",
        "0", "--max-distance", "300", "--step", "7");
    assert_int_equal(R.code, 0);
    assert_string_equal(strstr(R.out, "\ndistance"), a);
    /* and the bound is not the unscaled one */
    RUN("decay", "--dim", "128", "--base", "500000", "--draws", "0", "--max-distance", "300",
        "--step", "7");
    assert_string_not_equal(strstr(R.out, "\ndistance") + 40, a + 40);
    /* longrope: the default length holds the distances (5001 > 4096: long factors) */
    RUN("decay", "--rope-config", DATA "longrope.json", "--draws", "0", "--max-distance", "5000",
        "--step", "1000");
    assert_int_equal(R.code, 0);
    assert_non_null(strstr(R.out, "seq_len=5001 factors=long attention_factor="));
    assert_non_null(strstr(R.out, "dim=96 "));
    RUN("decay", "--rope-config", DATA "longrope.json", "--draws", "0", "--max-distance", "5000",
        "--step", "1000", "--seq-len", "100");
    assert_non_null(strstr(R.out, "seq_len=100 factors=short"));
    /* a list with the new specs, names per scaling */
    RUN("decay", "--dim", "64", "--scaling", "none,yarn:4:4096,yarn-paper:4:4096,dynamic:2:16",
        "--draws", "0", "--max-distance", "100", "--step", "50");
    assert_int_equal(R.code, 0);
    assert_non_null(strstr(R.out, "\tbound_b10000_yarn4_4096\tbound_b10000_yarnpaper4_4096\t"
                                  "bound_b10000_dynamic2_16\n"));
    assert_non_null(strstr(R.out, "scaling=dynamic factor=2 max_pos=16 seq_len=101]"));
    RUN("decay", "--dim", "64", "--scaling", "llama3:8:64,llama3:8:64:2:5", "--draws", "0",
        "--max-distance", "10");
    assert_int_equal(R.code, 0);
    assert_non_null(strstr(R.out, "\tbound_b10000_llama3_8_64\tbound_b10000_llama3_8_64_2_5\n"));
    /* errors */
    RUN("decay", "--rope-config", DATA "llama3.json", "--dim", "64");
    expect_fail("--dim conflicts with --rope-config");
    RUN("decay", "--seq-len", "10", "--scaling", "linear:2");
    expect_fail("--seq-len has no effect");
    RUN("decay", "--rope-config", P("none.json"));
    expect_fail("--rope-config: ");
    RUN("decay", "--scaling", "llama3:8:8192:4:1");
    expect_fail("high_freq_factor 1 must exceed low_freq_factor 4");
}

/* Bad input: one line on stderr, exit 2, no output file. */
static void test_cli_errors(void **state)
{
    (void)state;
    save_x("x.npy", 3, 64, RK_F32);
    unlink(P("y.npy"));
    unlink(P("o.npy"));
    write_text(P("bad.json"), "{\"head_dim\": 64, \"max_position_embeddings\": 8192, "
                              "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": \"4\"}}");
    write_text(P("notjson.json"), "head_dim = 64\n");
    write_text(P("mrope.json"), "{\"head_dim\": 64, \"rope_scaling\": {\"rope_type\": "
                                "\"default\", \"mrope_section\": [8, 12, 12]}}");
#define ROPE(...) RUN("rope", "--in", P("x.npy"), "--out", P("y.npy"), __VA_ARGS__)
    ROPE("--rope-config", P("bad.json"));
    expect_fail("--rope-config: ");
    assert_non_null(strstr(R.err, "bad.json: rope_scaling.factor: expected a number, got a string"));
    ROPE("--rope-config", P("notjson.json"));
    expect_fail("notjson.json: not valid JSON");
    ROPE("--rope-config", P("mrope.json"));
    expect_fail("rope_scaling.mrope_section: not a parameter of rope_type 'default'");
    ROPE("--rope-config", P("missing.json"));
    expect_fail("missing.json: cannot open");
    ROPE("--rope-config", DATA "llama3.json");                 /* x is 64 wide, the file 128 */
    expect_fail("has d = 64, but --rope-config gives a head width of 128");
    ROPE("--rope-config", DATA "llama3.json", "--base", "100");
    expect_fail("--base conflicts with --rope-config (the file gives rope_theta)");
    ROPE("--rope-config", DATA "llama3.json", "--scaling", "linear:2");
    expect_fail("--scaling conflicts with --rope-config");
    ROPE("--rope-config", DATA "llama3.json", "--rotary-dim", "32");
    expect_fail("--rotary-dim conflicts with --rope-config");
    ROPE("--seq-len", "100");
    expect_fail("--seq-len has no effect with scaling none");
    ROPE("--seq-len", "0", "--scaling", "dynamic:2:16");
    expect_fail("--seq-len 0 must be >= 1");
    ROPE("--scaling", "dynamic:2");
    expect_fail("dynamic takes two fields, factor F and max_position_embeddings M (e.g. dynamic:2:4096)");
    ROPE("--scaling", "llama3:8:8192:1");
    expect_fail("llama3 takes two or four fields");
    ROPE("--scaling", "longrope:2");
    expect_fail("longrope comes from --rope-config");
    ROPE("--scaling", "dynamic:2:0");
    expect_fail("max_position_embeddings 0 must be > 0");
    ROPE("--scaling", "dynamic:2:16", "--rotary-dim", "2");
    expect_fail("--scaling dynamic needs a rotary dimension > 2");
    ROPE("--print-freqs");
    expect_fail("--in is not used with --print-freqs");
    ROPE("--dim", "64");
    expect_fail("--dim is for --print-freqs");
    assert_int_equal(access(P("y.npy"), F_OK), -1);          /* never written */
    RUN("rope", "--print-freqs");
    expect_fail("--print-freqs needs --dim D (or --rope-config FILE)");
    RUN("rope", "--print-freqs", "--rope-config", DATA "llama3.json", "--dim", "64");
    expect_fail("--dim 64 has d = 64, but --rope-config gives a head width of 128");
    RUN("attend", "--variant", "softmax", "--q", P("x.npy"), "--k", P("x.npy"), "--v",
        P("x.npy"), "--out", P("o.npy"), "--rope", "qk", "--rope-config", DATA "llama3.json");
    expect_fail("gives a head width of 128");
    assert_int_equal(access(P("o.npy"), F_OK), -1);
#undef ROPE
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_golden_files),
        cmocka_unit_test(test_reader_variants),
        cmocka_unit_test(test_reader_errors),
        cmocka_unit_test(test_reader_files),
        cmocka_unit_test(test_cli_print_freqs),
        cmocka_unit_test(test_cli_rope_golden),
        cmocka_unit_test(test_cli_attend),
        cmocka_unit_test(test_cli_decay),
        cmocka_unit_test(test_cli_errors),
    };
    return cmocka_run_group_tests_name("rope_hf", tests, setup, teardown);
}
