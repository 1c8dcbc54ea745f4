/* A model's RoPE from its Hugging Face config.json (ropekit.h, rk_rope_hf_load).
 *
 * What transformers does with the file, written here from its own sources (our code, their
 * names): configuration_utils / RotaryEmbeddingConfigMixin.convert_rope_params_to_dict and
 * standardize_rope_params gather rope_theta, partial_rotary_factor and
 * original_max_position_embeddings into one dictionary (`rope_parameters` in newer files,
 * `rope_scaling` in older ones; a top-level original_max_position_embeddings wins, as for
 * Phi-3), the _validate_*_rope_parameters functions name each type's keys, and
 * modeling_rope_utils.py's _compute_{default,linear_scaling,dynamic_ntk,yarn,longrope,llama3}
 * _parameters turn them into frequencies. Here the file becomes an rk_rope_config; the
 * frequencies themselves are computed by rk_rope_create (lib/rope.c).
 *
 * The parser is jansson (strict JSON, duplicate keys refused). Everything read is checked:
 * type, range, and, inside the rope dictionary, that each key is one ropekit knows for that
 * rope type: an unknown key (e.g. Qwen2-VL's mrope_section) may change the rotation, so it is
 * an error naming the key rather than silently ignored. Top-level keys other than those read
 * are ignored (a config.json has many). Every message starts with the file's name and names
 * the key ("config.json: rope_scaling.factor: expected a number, got a string").
 */
#include "rk_internal.h"
#include "rk_file.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

/* A config.json is a few KB (Phi-3's, with its factor lists, about 10 KB). */
#define HF_MAX_BYTES ((size_t)16 << 20)

typedef struct {
    const char *name;     /* file name, for messages                                   */
    const char *dname;    /* "rope_parameters" or "rope_scaling"                       */
    json_t     *top;      /* the whole file (an object)                                */
    json_t     *dict;     /* the rope dictionary, or NULL                              */
} hf_ctx;

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:  return "an object";
    case JSON_ARRAY:   return "an array";
    case JSON_STRING:  return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL:    return "a number";
    case JSON_TRUE:
    case JSON_FALSE:   return "a boolean";
    case JSON_NULL:    return "null";
    }
    return "a value";
}

/* "rope_scaling.factor" or "head_dim" into buf. */
static const char *key_path(const hf_ctx *h, int in_dict, const char *key, char *buf, size_t n)
{
    if (in_dict) snprintf(buf, n, "%s.%s", h->dname, key);
    else snprintf(buf, n, "%s", key);
    return buf;
}

/* The value of key (NULL when absent or null). */
static json_t *get(const hf_ctx *h, int in_dict, const char *key)
{
    json_t *o = in_dict ? h->dict : h->top;
    json_t *v = o ? json_object_get(o, key) : NULL;
    return v && !json_is_null(v) ? v : NULL;
}

/* A number: *present = 0 if absent or null; RK_EFORMAT if another kind. */
static int get_number(const hf_ctx *h, int in_dict, const char *key, double *out, int *present)
{
    char kp[96];
    json_t *v = get(h, in_dict, key);
    *present = v != NULL;
    if (!v) return RK_OK;
    if (!json_is_number(v))
        RK_FAIL(RK_EFORMAT, "%s: %s: expected a number, got %s", h->name,
                key_path(h, in_dict, key, kp, sizeof kp), json_kind(v));
    *out = json_number_value(v);
    return RK_OK;
}

/* A number that must be present and > 0 (> lo_excl in general). */
static int need_positive(const hf_ctx *h, int in_dict, const char *key, const char *why,
                         double *out)
{
    char kp[96];
    int present, rc = get_number(h, in_dict, key, out, &present);
    if (rc) return rc;
    if (!present)
        RK_FAIL(RK_EFORMAT, "%s: %s is missing (%s)", h->name,
                key_path(h, in_dict, key, kp, sizeof kp), why);
    if (!(*out > 0.0))
        RK_FAIL(RK_EINVAL, "%s: %s = %g must be > 0", h->name,
                key_path(h, in_dict, key, kp, sizeof kp), *out);
    return RK_OK;
}

/* An optional number that must be > 0 when given. */
static int opt_positive(const hf_ctx *h, int in_dict, const char *key, double *out,
                        int *present)
{
    char kp[96];
    int rc = get_number(h, in_dict, key, out, present);
    if (rc) return rc;
    if (*present && !(*out > 0.0))
        RK_FAIL(RK_EINVAL, "%s: %s = %g must be > 0", h->name,
                key_path(h, in_dict, key, kp, sizeof kp), *out);
    return RK_OK;
}

/* An optional positive integer (head_dim, hidden_size, ...). */
static int get_count(const hf_ctx *h, const char *key, size_t *out, int *present)
{
    json_t *v = get(h, 0, key);
    *present = v != NULL;
    if (!v) return RK_OK;
    if (!json_is_integer(v))
        RK_FAIL(RK_EFORMAT, "%s: %s: expected an integer, got %s", h->name, key, json_kind(v));
    json_int_t n = json_integer_value(v);
    if (n <= 0 || (unsigned long long)n > (unsigned long long)(SIZE_MAX / 4))
        RK_FAIL(RK_EINVAL, "%s: %s = %lld must be > 0", h->name, key, (long long)n);
    *out = (size_t)n;
    return RK_OK;
}

/* An optional boolean; *out keeps its value when absent or null. */
static int get_bool(const hf_ctx *h, int in_dict, const char *key, int *out)
{
    char kp[96];
    json_t *v = get(h, in_dict, key);
    if (!v) return RK_OK;
    if (!json_is_boolean(v))
        RK_FAIL(RK_EFORMAT, "%s: %s: expected true or false, got %s", h->name,
                key_path(h, in_dict, key, kp, sizeof kp), json_kind(v));
    *out = json_is_true(v);
    return RK_OK;
}

/* An optional string (NULL when absent or null). */
static int get_string(const hf_ctx *h, int in_dict, const char *key, const char **out)
{
    char kp[96];
    json_t *v = get(h, in_dict, key);
    *out = NULL;
    if (!v) return RK_OK;
    if (!json_is_string(v))
        RK_FAIL(RK_EFORMAT, "%s: %s: expected a string, got %s", h->name,
                key_path(h, in_dict, key, kp, sizeof kp), json_kind(v));
    *out = json_string_value(v);
    return RK_OK;
}

/* A list of n positive numbers from the rope dictionary into out. */
static int get_factors(const hf_ctx *h, const char *key, size_t n, size_t r, double *out)
{
    char kp[96];
    key_path(h, 1, key, kp, sizeof kp);
    json_t *v = get(h, 1, key);
    if (!v) RK_FAIL(RK_EFORMAT, "%s: %s is missing (longrope needs %zu factors, one per pair)",
                    h->name, kp, n);
    if (!json_is_array(v))
        RK_FAIL(RK_EFORMAT, "%s: %s: expected a list of numbers, got %s", h->name, kp,
                json_kind(v));
    if (json_array_size(v) != n)
        RK_FAIL(RK_EFORMAT, "%s: %s has %zu values; the rotary dimension %zu needs %zu (one per "
                "pair)", h->name, kp, json_array_size(v), r, n);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_number(e))
            RK_FAIL(RK_EFORMAT, "%s: %s[%zu]: expected a number, got %s", h->name, kp, i,
                    json_kind(e));
        out[i] = json_number_value(e);
        if (!(out[i] > 0.0))
            RK_FAIL(RK_EINVAL, "%s: %s[%zu] = %g must be > 0", h->name, kp, i, out[i]);
    }
    return RK_OK;
}

/* ---- the rope dictionary ----------------------------------------------------------------- */

/* The rope types ropekit reads, with the keys of each (HF's _validate_*_rope_parameters:
 * required and optional keys; dynamic also accepts original_max_position_embeddings, which
 * older transformers listed and _compute_dynamic_ntk_parameters never reads). */
static const struct {
    const char     *type;
    rk_rope_scaling scaling;
    const char     *keys[10];
} hf_types[] = {
    { "default", RK_SCALE_NONE, { NULL } },
    { "linear", RK_SCALE_LINEAR, { "factor", NULL } },
    { "dynamic", RK_SCALE_DYNAMIC, { "factor", "original_max_position_embeddings", NULL } },
    { "yarn", RK_SCALE_YARN, { "factor", "original_max_position_embeddings", "attention_factor",
                               "beta_fast", "beta_slow", "mscale", "mscale_all_dim", "truncate",
                               NULL } },
    { "longrope", RK_SCALE_LONGROPE, { "short_factor", "long_factor", "factor",
                                       "attention_factor", "original_max_position_embeddings",
                                       NULL } },
    { "llama3", RK_SCALE_LLAMA3, { "factor", "low_freq_factor", "high_freq_factor",
                                   "original_max_position_embeddings", NULL } },
};
#define HF_NTYPES (sizeof hf_types / sizeof hf_types[0])
/* Keys every type's dictionary may hold (standardize_rope_params moves the first two in). */
static const char *const hf_common[] = { "rope_theta", "partial_rotary_factor", "rope_type",
                                         "type", NULL };

static int key_in(const char *k, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(k, list[i]) == 0) return 1;
    return 0;
}

/* Pick the dictionary: rope_parameters (newer) or rope_scaling (older); both only if equal. */
static int find_dict(hf_ctx *h)
{
    json_t *rp = json_object_get(h->top, "rope_parameters");
    json_t *rs = json_object_get(h->top, "rope_scaling");
    const char *names[2] = { "rope_parameters", "rope_scaling" };
    json_t *d[2] = { rp, rs };
    for (int k = 0; k < 2; k++)
        if (d[k] && !json_is_null(d[k]) && !json_is_object(d[k]))
            RK_FAIL(RK_EFORMAT, "%s: %s: expected an object or null, got %s", h->name, names[k],
                    json_kind(d[k]));
    if (rp && json_is_null(rp)) rp = NULL;
    if (rs && json_is_null(rs)) rs = NULL;
    if (rp && rs && !json_equal(rp, rs))
        RK_FAIL(RK_EFORMAT, "%s: both rope_parameters and rope_scaling are given and differ: "
                "keep one", h->name);
    h->dict = rp ? rp : rs;
    h->dname = rp ? "rope_parameters" : "rope_scaling";
    if (!h->dict) return RK_OK;
    /* A dictionary per layer type (Gemma 3: full_attention / sliding_attention) */
    const char *key;
    json_t *v;
    json_object_foreach(h->dict, key, v) {
        if (json_is_object(v))
            RK_FAIL(RK_EUNSUP, "%s: %s.%s: RoPE per layer type is not supported (one rope "
                    "dictionary per file)", h->name, h->dname, key);
    }
    return RK_OK;
}

/* rope_type (or its older name `type`) and the keys allowed for it. */
static int find_type(const hf_ctx *h, size_t *t, char *type_out, size_t n)
{
    const char *rt = NULL, *ty = NULL;
    int rc = get_string(h, 1, "rope_type", &rt);
    if (!rc) rc = get_string(h, 1, "type", &ty);
    if (rc) return rc;
    if (rt && ty && strcmp(rt, ty) != 0)
        RK_FAIL(RK_EFORMAT, "%s: %s.rope_type '%s' and %s.type '%s' disagree", h->name, h->dname,
                rt, h->dname, ty);
    const char *type = rt ? rt : ty ? ty : "default";
    const char *key = rt ? "rope_type" : "type";
    /* "su": Phi-3's first name for longrope (Phi3Config renames it) */
    const char *canon = strcmp(type, "su") == 0 ? "longrope" : type;
    for (*t = 0; *t < HF_NTYPES; (*t)++)
        if (strcmp(canon, hf_types[*t].type) == 0) break;
    if (*t == HF_NTYPES)
        RK_FAIL(RK_EUNSUP, "%s: %s.%s '%.40s' is not supported (ropekit reads default, linear, "
                "dynamic, yarn, longrope, llama3)", h->name, h->dname, key, type);
    snprintf(type_out, n, "%s", hf_types[*t].type);
    if (!h->dict) return RK_OK;
    const char *k;
    json_t *v;
    json_object_foreach(h->dict, k, v) {
        (void)v;
        if (!key_in(k, hf_common) && !key_in(k, hf_types[*t].keys))
            RK_FAIL(RK_EUNSUP, "%s: %s.%.60s: not a parameter of rope_type '%s' that ropekit "
                    "knows (it could change the rotation, so it is not ignored)", h->name,
                    h->dname, k, hf_types[*t].type);
    }
    return RK_OK;
}

/* ---- the whole file ---------------------------------------------------------------------- */

/* The head width and the rotary dimension. */
static int head_dims(const hf_ctx *h, rk_rope_hf *out)
{
    size_t head = 0, hidden = 0, heads = 0, rd = 0;
    int p_q = 0, p_h = 0, p_hid = 0, p_n = 0, p_rd = 0, rc;
    if ((rc = get_count(h, "qk_rope_head_dim", &head, &p_q))) return rc;
    if (!p_q && (rc = get_count(h, "head_dim", &head, &p_h))) return rc;
    if (!p_q && !p_h) {
        /* GPT-J and CodeGen name them n_embd and n_head (their configs' attribute_map) */
        if ((rc = get_count(h, "hidden_size", &hidden, &p_hid)) ||
            (!p_hid && (rc = get_count(h, "n_embd", &hidden, &p_hid))) ||
            (rc = get_count(h, "num_attention_heads", &heads, &p_n)) ||
            (!p_n && (rc = get_count(h, "n_head", &heads, &p_n))))
            return rc;
        if (!p_hid || !p_n)
            RK_FAIL(RK_EFORMAT, "%s: head_dim is missing (and hidden_size / num_attention_heads "
                    "cannot stand in: %s is missing)", h->name,
                    p_hid ? "num_attention_heads" : "hidden_size");
        head = hidden / heads;           /* HF: hidden_size // num_attention_heads */
        if (head == 0)
            RK_FAIL(RK_EINVAL, "%s: hidden_size %zu // num_attention_heads %zu is 0", h->name,
                    hidden, heads);
    }
    /* rotary share: partial_rotary_factor (dictionary first, as setdefault), GPT-NeoX
     * rotary_pct, or GPT-J's absolute rotary_dim */
    double prf = 1.0;
    int present;
    const char *pkey = "partial_rotary_factor";
    int in_dict = 1;
    if ((rc = get_number(h, 1, pkey, &prf, &present))) return rc;
    if (!present) {
        in_dict = 0;
        if ((rc = get_number(h, 0, pkey, &prf, &present))) return rc;
    }
    if (!present) {
        pkey = "rotary_pct";
        if ((rc = get_number(h, 0, pkey, &prf, &present))) return rc;
    }
    if ((rc = get_count(h, "rotary_dim", &rd, &p_rd))) return rc;
    char kp[96];
    if (present && !(prf > 0.0 && prf <= 1.0))
        RK_FAIL(RK_EINVAL, "%s: %s = %g must be in (0, 1]", h->name,
                key_path(h, in_dict, pkey, kp, sizeof kp), prf);
    if (p_rd && present)
        RK_FAIL(RK_EFORMAT, "%s: rotary_dim and %s both give the rotary share: keep one",
                h->name, pkey);
    if (p_rd) {
        if (rd > head)
            RK_FAIL(RK_EINVAL, "%s: rotary_dim = %zu exceeds the head width %zu", h->name, rd,
                    head);
        prf = (double)rd / (double)head;
    } else {
        rd = (size_t)((double)head * prf);  /* HF: int(head_dim * partial_rotary_factor) */
    }
    if (rd < 2 || rd % 2)
        RK_FAIL(RK_EINVAL, "%s: the rotary dimension (head width %zu x %s %g = %zu) must be even "
                "and >= 2", h->name, head, p_rd ? "share" : pkey, prf, rd);
    out->head_dim = head;
    out->partial_rotary_factor = prf;
    out->cfg.dim = head;
    out->cfg.rotary_dim = rd;    /* explicit: per-pair lists have rd / 2 values whatever dim is */
    return RK_OK;
}

/* Pairing from model_type: GPT-J and CodeGen rotate_every_two, DeepSeek V2 (complex pairs)
 * and V3 (rope_interleave, default true) interleaved; everything else rotate_half. */
static int pairing(const hf_ctx *h, rk_rope_style *st)
{
    const char *mt = NULL;
    int rc = get_string(h, 0, "model_type", &mt);
    if (rc) return rc;
    int inter = 0;
    if (mt && (!strcmp(mt, "gptj") || !strcmp(mt, "codegen") || !strcmp(mt, "deepseek_v2")))
        inter = 1;
    if (mt && !strcmp(mt, "deepseek_v3")) {
        inter = 1;
        if ((rc = get_bool(h, 0, "rope_interleave", &inter))) return rc;
    }
    *st = inter ? RK_ROPE_INTERLEAVED : RK_ROPE_HALF;
    return RK_OK;
}

static int hf_read(hf_ctx *h, rk_rope_hf *out)
{
    int rc = find_dict(h);
    size_t t = 0;
    if (!rc) rc = find_type(h, &t, out->rope_type, sizeof out->rope_type);
    if (!rc) rc = head_dims(h, out);
    if (!rc) rc = pairing(h, &out->cfg.style);
    if (rc) return rc;
    rk_rope_config *c = &out->cfg;
    rk_rope_scaling sc = hf_types[t].scaling;
    c->scaling = sc;

    /* rope_theta: the dictionary's, else the top level's (GPT-NeoX: rotary_emb_base) */
    int present, in_dict = 1;
    const char *bkey = "rope_theta";
    double base = 10000.0;
    if ((rc = get_number(h, 1, bkey, &base, &present))) return rc;
    if (!present) {
        in_dict = 0;
        if ((rc = get_number(h, 0, bkey, &base, &present))) return rc;
    }
    if (!present) {
        bkey = "rotary_emb_base";
        if ((rc = get_number(h, 0, bkey, &base, &present))) return rc;
    }
    char kp[96];
    if (!(base > 0.0) || base == 1.0)
        RK_FAIL(RK_EINVAL, "%s: %s = %g must be > 0 and != 1", h->name,
                key_path(h, in_dict, bkey, kp, sizeof kp), base);
    c->base = base;

    /* lengths: max_position_embeddings (top level); original_max_position_embeddings top level
     * first (standardize_rope_params), then the dictionary, then max_position_embeddings */
    double M = 0.0, L = 0.0;
    int has_M, has_L;
    if ((rc = opt_positive(h, 0, "max_position_embeddings", &M, &has_M))) return rc;
    if ((rc = opt_positive(h, 0, "original_max_position_embeddings", &L, &has_L))) return rc;
    if (!has_L && (rc = opt_positive(h, 1, "original_max_position_embeddings", &L, &has_L)))
        return rc;
    int uses_L = sc == RK_SCALE_YARN || sc == RK_SCALE_LONGROPE || sc == RK_SCALE_LLAMA3;
    if (uses_L && !has_L) {
        if (!has_M)
            RK_FAIL(RK_EFORMAT, "%s: %s.original_max_position_embeddings is missing (rope_type "
                    "'%s' needs it, or max_position_embeddings in its place)", h->name, h->dname,
                    out->rope_type);
        L = M;
    }
    c->max_pos = has_M ? M : 0.0;
    c->orig_ctx = uses_L ? L : 0.0;

    double f = 0.0;
    int has_f = 0;
    switch (sc) {
    case RK_SCALE_NONE:
        break;
    case RK_SCALE_LINEAR:
        rc = need_positive(h, 1, "factor", "rope_type 'linear' divides the frequencies by it", &f);
        break;
    case RK_SCALE_DYNAMIC:
        rc = need_positive(h, 1, "factor", "rope_type 'dynamic' needs it", &f);
        if (!rc && !has_M)
            RK_FAIL(RK_EFORMAT, "%s: max_position_embeddings is missing (rope_type 'dynamic' "
                    "scales the base beyond it)", h->name);
        break;
    case RK_SCALE_YARN:
    case RK_SCALE_LONGROPE:
        rc = opt_positive(h, 1, "factor", &f, &has_f);
        if (!rc && !has_f && !has_M)
            RK_FAIL(RK_EFORMAT, "%s: %s.factor is missing and max_position_embeddings too (one "
                    "of them gives the factor)", h->name, h->dname);
        /* no factor: rk_rope_create takes max_pos / orig_ctx (HF: M / L) */
        break;
    case RK_SCALE_LLAMA3:
        if (!(rc = need_positive(h, 1, "factor", "rope_type 'llama3' needs it", &f)) &&
            !(rc = need_positive(h, 1, "low_freq_factor", "rope_type 'llama3' needs it",
                                 &c->low_freq_factor)))
            rc = need_positive(h, 1, "high_freq_factor", "rope_type 'llama3' needs it",
                               &c->high_freq_factor);
        if (!rc && !(c->high_freq_factor > c->low_freq_factor))
            RK_FAIL(RK_EINVAL, "%s: %s.high_freq_factor = %g must exceed low_freq_factor = %g",
                    h->name, h->dname, c->high_freq_factor, c->low_freq_factor);
        break;
    default:
        break;
    }
    if (rc) return rc;
    c->factor = f;

    if (sc == RK_SCALE_YARN || sc == RK_SCALE_LONGROPE) {
        int p;
        if ((rc = opt_positive(h, 1, "attention_factor", &c->attn_factor, &p))) return rc;
    }
    if (sc == RK_SCALE_YARN) {
        /* beta_fast / beta_slow: `get(...) or 32` / `or 1`: 0 and null are the defaults */
        int p;
        double v;
        if ((rc = get_number(h, 1, "beta_fast", &v, &p))) return rc;
        if (p) c->beta_fast = v;
        if ((rc = get_number(h, 1, "beta_slow", &v, &p))) return rc;
        if (p) c->beta_slow = v;
        double bf = c->beta_fast != 0.0 ? c->beta_fast : 32.0;
        double bs = c->beta_slow != 0.0 ? c->beta_slow : 1.0;
        if (!(bs > 0.0) || !(bf > bs))
            RK_FAIL(RK_EINVAL, "%s: %s.beta_fast = %g and beta_slow = %g: ropekit needs "
                    "beta_fast > beta_slow > 0", h->name, h->dname, bf, bs);
        if ((rc = get_number(h, 1, "mscale", &c->mscale, &p))) return rc;
        if ((rc = get_number(h, 1, "mscale_all_dim", &c->mscale_all_dim, &p))) return rc;
        int truncate = 1;
        if ((rc = get_bool(h, 1, "truncate", &truncate))) return rc;
        c->no_truncate = !truncate;
    }
    if (sc == RK_SCALE_LONGROPE) {
        size_t r = c->rotary_dim, n = r / 2, bytes;
        if (rk__bytes(2 * n, sizeof(double), &bytes))
            RK_FAIL(RK_EOVERFLOW, "%s: %zu factors overflow", h->name, n);
        out->factors = rk__alloc(bytes);
        if (!out->factors) RK_FAIL(RK_ENOMEM, "%s: cannot allocate %zu bytes", h->name, bytes);
        if ((rc = get_factors(h, "short_factor", n, r, out->factors)) ||
            (rc = get_factors(h, "long_factor", n, r, out->factors + n)))
            return rc;
        c->short_factor = out->factors;
        c->long_factor = out->factors + n;
    }

    /* Whatever the file says must make a plan: let rk_rope_create judge the combination. */
    rk_rope_config probe = *c;
    probe.table_len = 1;
    rk_rope *r = NULL;
    rc = rk_rope_create(&r, &probe);
    if (rc) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", rk_last_error());
        RK_FAIL(rc, "%s: %s", h->name, msg);
    }
    rk_rope_destroy(r);
    return RK_OK;
}

void rk_rope_hf_free(rk_rope_hf *h)
{
    if (!h) return;
    rk__free(h->factors);
    memset(h, 0, sizeof *h);
}

int rk_rope_hf_parse(rk_rope_hf *out, const char *json, size_t len, const char *name)
{
    rk__clear_error();
    if (!out) RK_FAIL(RK_EINVAL, "rk_rope_hf_parse: out is NULL");
    memset(out, 0, sizeof *out);
    if (!name) name = "config";
    if (!json && len) RK_FAIL(RK_EINVAL, "rk_rope_hf_parse: json is NULL");
    if (len > HF_MAX_BYTES)
        RK_FAIL(RK_EFORMAT, "%s: %zu bytes is too large for a config.json (limit %zu MiB)", name,
                len, HF_MAX_BYTES >> 20);
    json_error_t err;
    json_t *top = json_loadb(json ? json : "", len, JSON_REJECT_DUPLICATES, &err);
    if (!top)
        RK_FAIL(RK_EFORMAT, "%s: not valid JSON: %s (line %d, column %d)", name, err.text,
                err.line, err.column);
    int rc;
    if (!json_is_object(top)) {
        rc = rk__fail(RK_EFORMAT, "%s: expected a JSON object (a config.json), got %s", name,
                      json_kind(top));
    } else {
        hf_ctx h = { name, "rope_parameters", top, NULL };
        rc = hf_read(&h, out);
    }
    json_decref(top);
    if (rc) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", rk_last_error());
        rk_rope_hf_free(out);
        rk__fail(rc, "%s", msg);
    }
    return rc;
}

int rk_rope_hf_load(rk_rope_hf *out, const char *path)
{
    rk__clear_error();
    if (!out) RK_FAIL(RK_EINVAL, "rk_rope_hf_load: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path) RK_FAIL(RK_EINVAL, "rk_rope_hf_load: path is NULL");
    struct stat st;
    int fd, rc = rk__in_open(path, &fd, &st);
    if (rc) return rc;
    if (st.st_size < 0 || (uintmax_t)st.st_size > HF_MAX_BYTES) {
        close(fd);
        RK_FAIL(RK_EFORMAT, "%s: %jd bytes is too large for a config.json (limit %zu MiB)", path,
                (intmax_t)st.st_size, HF_MAX_BYTES >> 20);
    }
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        RK_FAIL(RK_ENOMEM, "%s: cannot allocate %zu bytes", path, cap);
    }
    for (;;) {
        ssize_t k = read(fd, buf + len, cap - len);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            int e = errno;
            free(buf);
            close(fd);
            RK_FAIL(RK_EIO, "%s: read error: %s", path, strerror(e));
        }
        if (k == 0) break;
        len += (size_t)k;
        if (len == cap) {        /* it grew while being read */
            free(buf);
            close(fd);
            RK_FAIL(RK_EFORMAT, "%s: the file grew while being read (more than %jd bytes)", path,
                    (intmax_t)st.st_size);
        }
    }
    close(fd);
    rc = rk_rope_hf_parse(out, buf, len, path);
    free(buf);
    return rc;
}
