/* Checkpoints (see lm.h): version 1, little-endian.
 *
 *   offset  size
 *   0       8      magic "RKLMCKPT"
 *   8       4      u32 version (1)
 *   12      4      u32 header bytes H
 *   16      32     the attention variant's name (NUL-padded)
 *   48      H-32   the header fields, 8 bytes each (u64 or IEEE double), in the order of
 *                  `fields` below: model, attention template, training, data identity, state
 *   16+H    8      u64 parameter count n
 *           4n     parameters, then AdamW m, then v (float32 each)
 *           8      u64 FNV-1a 64 of every byte before it
 * Written through rk__out (temporary file, fsync, rename), so a crash or kill -9 at any moment
 * leaves the previous checkpoint or the new one, never a torn file. */
#include "lm_internal.h"

#include "rk_file.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char MAGIC[8] = { 'R', 'K', 'L', 'M', 'C', 'K', 'P', 'T' };

/* ---- the header fields -------------------------------------------------------------------- */
typedef struct {
    const char *name;
    int         dbl;      /* IEEE double; else u64 */
    int         config;   /* part of the configuration (compared on resume); else state */
    uint64_t    u;
    double      d;
} field;

#define U(n, v) { n, 0, 1, (uint64_t)(v), 0.0 }
#define D(n, v) { n, 1, 1, 0, (double)(v) }
#define NFIELDS 40

static size_t info_fields(const lm_ckpt_info *i, field *f)
{
    const lm_config *c = &i->cfg;
    const rk_attn_config *a = &c->attn;
    const lm_train_config *t = &i->tc;
    const field all[] = {
        U("ctx", c->ctx), U("d_model", c->d_model), U("n_layers", c->n_layers),
        U("n_heads", c->n_heads), U("d_ff", c->d_ff), U("pe", c->pe),
        U("attn.kind", a->kind), U("attn.rope", a->rope), U("attn.map", a->map),
        U("attn.kernel", a->kernel), U("attn.proj", a->proj), U("attn.proj_norm", a->proj_norm),
        U("attn.n_features", a->n_features), U("attn.rope_freq_dim_head", a->rope_freq_dim_head),
        D("attn.scale", a->scale), U("attn.rope_style", a->rope_cfg.style),
        U("attn.rotary_dim", a->rope_cfg.rotary_dim), D("attn.rope_base", a->rope_cfg.base),
        U("seed", t->seed), U("batch", t->batch), D("lr", t->opt.lr), D("min_lr", t->opt.min_lr),
        U("warmup", t->opt.warmup), U("steps", t->opt.steps), D("beta1", t->opt.beta1),
        D("beta2", t->opt.beta2), D("eps", t->opt.eps), D("weight_decay", t->opt.weight_decay),
        D("clip", t->opt.clip), U("redraw", t->redraw),
        U("data.kind", i->data_kind), U("data.hash", i->data_hash), U("data.bytes", i->data_len),
        U("data.shift", i->shift), U("data.alphabet", i->alphabet),
        { "step", 0, 0, i->step, 0.0 },
    };
    size_t n = sizeof all / sizeof all[0];
    memcpy(f, all, sizeof all);
    return n;
}

int lm_ckpt_diff(const lm_ckpt_info *a, const lm_ckpt_info *b, char *buf, size_t len)
{
    if (strncmp(a->cfg.attn_name, b->cfg.attn_name, LM_NAME_MAX) != 0) {
        snprintf(buf, len, "attention: %s vs %s", a->cfg.attn_name, b->cfg.attn_name);
        return 1;
    }
    field fa[NFIELDS], fb[NFIELDS];
    size_t n = info_fields(a, fa);
    info_fields(b, fb);
    for (size_t i = 0; i < n; i++) {
        if (!fa[i].config) continue;
        if (fa[i].dbl ? memcmp(&fa[i].d, &fb[i].d, sizeof fa[i].d) != 0 : fa[i].u != fb[i].u) {
            if (fa[i].dbl) snprintf(buf, len, "%s: %.17g vs %.17g", fa[i].name, fa[i].d, fb[i].d);
            else if (!strcmp(fa[i].name, "pe"))
                snprintf(buf, len, "pe: %s vs %s", lm_pe_name((lm_pe)fa[i].u),
                         lm_pe_name((lm_pe)fb[i].u));
            else if (!strcmp(fa[i].name, "data.hash"))
                snprintf(buf, len, "data: contents differ (FNV-1a %016llx vs %016llx)",
                         (unsigned long long)fa[i].u, (unsigned long long)fb[i].u);
            else snprintf(buf, len, "%s: %llu vs %llu", fa[i].name, (unsigned long long)fa[i].u,
                          (unsigned long long)fb[i].u);
            return 1;
        }
    }
    return 0;
}

void lm_trainer_info(const lm_trainer *t, lm_ckpt_info *info)
{
    memset(info, 0, sizeof *info);
    info->cfg = t->lay.cfg;
    info->tc = t->tc;
    info->data_kind = (uint32_t)t->data->kind;
    info->data_hash = t->data->hash;
    info->data_len = t->data->n;
    info->shift = t->data->shift;
    info->alphabet = t->data->alphabet;
    info->step = t->step;
}

/* ---- little-endian bytes ------------------------------------------------------------------ */
static void put64(uint8_t *p, uint64_t x)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(x >> (8 * i));
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t x = 0;
    for (int i = 0; i < 8; i++) x |= (uint64_t)p[i] << (8 * i);
    return x;
}
static void put32(uint8_t *p, uint32_t x)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(x >> (8 * i));
}
static uint32_t get32(const uint8_t *p)
{
    uint32_t x = 0;
    for (int i = 0; i < 4; i++) x |= (uint32_t)p[i] << (8 * i);
    return x;
}
static uint64_t dbits(double d) { uint64_t u; memcpy(&u, &d, 8); return u; }
static double bitsd(uint64_t u) { double d; memcpy(&d, &u, 8); return d; }

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ULL;
    return h;
}
#define FNV0 0xCBF29CE484222325ULL

static size_t header_bytes(void)
{
    field f[NFIELDS];
    lm_ckpt_info z;
    memset(&z, 0, sizeof z);
    return LM_NAME_MAX + 8 * info_fields(&z, f) + 8 /* loss_sum */ + 8 /* loss_n */;
}

/* ---- writing ------------------------------------------------------------------------------ */
typedef struct {
    rk__out  o;
    uint64_t h;
    int      bad;
} writer;

static void wr(writer *w, const void *p, size_t n)
{
    if (w->bad) return;
    w->h = fnv(w->h, p, n);
    if (fwrite(p, 1, n, w->o.f) != n) w->bad = errno ? errno : EIO;
}

static void wr_floats(writer *w, const float *x, size_t n)
{
    uint8_t buf[4096];
    for (size_t i = 0; i < n;) {
        size_t k = 0;
        for (; k < sizeof buf / 4 && i < n; k++, i++) {
            uint32_t u;
            memcpy(&u, &x[i], 4);
            put32(buf + 4 * k, u);
        }
        wr(w, buf, 4 * k);
    }
}

int lm_trainer_save(const lm_trainer *t, const char *path)
{
    lm_ckpt_info info;
    lm_trainer_info(t, &info);
    field f[NFIELDS];
    const size_t nf = info_fields(&info, f), H = header_bytes();
    uint8_t *hdr = calloc(1, 16 + H);
    if (!hdr) RK_FAIL(RK_ENOMEM, "checkpoint: out of memory");
    memcpy(hdr, MAGIC, 8);
    put32(hdr + 8, LM_CKPT_VERSION);
    put32(hdr + 12, (uint32_t)H);
    memcpy(hdr + 16, t->lay.cfg.attn_name, strnlen(t->lay.cfg.attn_name, LM_NAME_MAX));
    uint8_t *p = hdr + 16 + LM_NAME_MAX;
    for (size_t i = 0; i < nf; i++, p += 8) put64(p, f[i].dbl ? dbits(f[i].d) : f[i].u);
    put64(p, dbits(t->loss_sum));
    put64(p + 8, (uint64_t)t->loss_n);

    writer w;
    memset(&w, 0, sizeof w);
    w.h = FNV0;
    int e = rk__out_open(&w.o, path);
    if (e) {
        free(hdr);
        RK_FAIL(RK_EIO, "checkpoint %s: cannot %s: %s", path, w.o.step, strerror(e));
    }
    wr(&w, hdr, 16 + H);
    free(hdr);
    uint8_t nb[8];
    put64(nb, (uint64_t)t->lay.nparams);
    wr(&w, nb, 8);
    wr_floats(&w, t->params, t->lay.nparams);
    wr_floats(&w, t->m, t->lay.nparams);
    wr_floats(&w, t->v, t->lay.nparams);
    uint8_t hb[8];
    put64(hb, w.h);
    wr(&w, hb, 8);
    if (w.bad) {
        rk__out_abort(&w.o);
        RK_FAIL(RK_EIO, "checkpoint %s: cannot write: %s", path, strerror(w.bad));
    }
    if ((e = rk__out_commit(&w.o)))
        RK_FAIL(RK_EIO, "checkpoint %s: cannot %s: %s", path, w.o.step, strerror(e));
    return RK_OK;
}

/* ---- reading ------------------------------------------------------------------------------ */
typedef struct {
    uint8_t     *buf;
    size_t       len;
    lm_ckpt_info info;
    double       loss_sum;
    uint64_t     loss_n;
    uint64_t     nparams;
    const uint8_t *floats;   /* 3 nparams float32 */
} image;

static int read_all(const char *path, uint8_t **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) RK_FAIL(RK_EIO, "checkpoint %s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    uint8_t *b = malloc(cap);
    while (b) {
        if (n == cap) {
            uint8_t *nb = cap <= SIZE_MAX / 2 ? realloc(b, cap * 2) : NULL;
            if (!nb) { free(b); b = NULL; break; }
            b = nb;
            cap *= 2;
        }
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f), e = errno;
    fclose(f);
    if (!b) RK_FAIL(RK_ENOMEM, "checkpoint %s: out of memory", path);
    if (bad) {
        free(b);
        RK_FAIL(RK_EIO, "checkpoint %s: cannot read: %s", path, strerror(e));
    }
    *out = b;
    *len = n;
    return RK_OK;
}

static int parse(const char *path, image *im)
{
    memset(im, 0, sizeof *im);
    int rc = read_all(path, &im->buf, &im->len);
    if (rc) return rc;
    const uint8_t *b = im->buf;
    const size_t H = header_bytes(), len = im->len;
    if (len < 8 || memcmp(b, MAGIC, 8) != 0)
        RK_FAIL(RK_EFORMAT, "checkpoint %s: not a ropekit checkpoint (no RKLMCKPT magic)", path);
    if (len < 16) RK_FAIL(RK_EFORMAT, "checkpoint %s: truncated (%zu bytes)", path, len);
    uint32_t ver = get32(b + 8), hl = get32(b + 12);
    if (ver != LM_CKPT_VERSION)
        RK_FAIL(RK_EFORMAT, "checkpoint %s: version %u, this build reads version %d", path,
                (unsigned)ver, LM_CKPT_VERSION);
    if (hl != H)
        RK_FAIL(RK_EFORMAT, "checkpoint %s: header of %u bytes, version 1 has %zu", path,
                (unsigned)hl, H);
    if (len < 16 + H + 8) RK_FAIL(RK_EFORMAT, "checkpoint %s: truncated (%zu bytes)", path, len);
    im->nparams = get64(b + 16 + H);
    if (im->nparams > (SIZE_MAX - 16 - H - 16) / 12)
        RK_FAIL(RK_EFORMAT, "checkpoint %s: parameter count %llu is not possible", path,
                (unsigned long long)im->nparams);
    const size_t want = 16 + H + 8 + 12 * (size_t)im->nparams + 8;
    if (len < want)
        RK_FAIL(RK_EFORMAT, "checkpoint %s: truncated (%zu bytes, %zu expected for %llu "
                "parameters)", path, len, want, (unsigned long long)im->nparams);
    if (len > want)
        RK_FAIL(RK_EFORMAT, "checkpoint %s: %zu bytes after the end", path, len - want);
    if (fnv(FNV0, b, want - 8) != get64(b + want - 8))
        RK_FAIL(RK_EFORMAT, "checkpoint %s: checksum mismatch (the file is corrupt)", path);
    /* the header */
    lm_ckpt_info *i = &im->info;
    memcpy(i->cfg.attn_name, b + 16, LM_NAME_MAX);
    i->cfg.attn_name[LM_NAME_MAX - 1] = '\0';
    field f[NFIELDS];
    size_t nf = info_fields(i, f);
    const uint8_t *p = b + 16 + LM_NAME_MAX;
    uint64_t v[NFIELDS];
    for (size_t k = 0; k < nf; k++, p += 8) v[k] = get64(p);
    im->loss_sum = bitsd(get64(p));
    im->loss_n = get64(p + 8);
    size_t k = 0;
    lm_config *c = &i->cfg;
    rk_attn_config *a = &c->attn;
    lm_train_config *t = &i->tc;
    uint64_t u;
    c->ctx = (size_t)v[k++]; c->d_model = (size_t)v[k++]; c->n_layers = (size_t)v[k++];
    c->n_heads = (size_t)v[k++]; c->d_ff = (size_t)v[k++];
    u = v[k++]; if (u > LM_PE_SINUSOIDAL) goto bad; c->pe = (lm_pe)u;
    a->kind = (rk_kind)v[k++]; a->rope = (rk_rope_mode)v[k++]; a->map = (rk_map)v[k++];
    a->kernel = (rk_kernel)v[k++]; a->proj = (rk_proj)v[k++]; a->proj_norm = (rk_proj_norm)v[k++];
    a->n_features = (size_t)v[k++]; a->rope_freq_dim_head = (int)v[k++]; a->scale = bitsd(v[k++]);
    a->rope_cfg.style = (rk_rope_style)v[k++]; a->rope_cfg.rotary_dim = (size_t)v[k++];
    a->rope_cfg.base = bitsd(v[k++]);
    t->seed = (unsigned long)v[k++]; t->batch = (size_t)v[k++]; t->opt.lr = bitsd(v[k++]);
    t->opt.min_lr = bitsd(v[k++]); t->opt.warmup = (size_t)v[k++]; t->opt.steps = (size_t)v[k++];
    t->opt.beta1 = bitsd(v[k++]); t->opt.beta2 = bitsd(v[k++]); t->opt.eps = bitsd(v[k++]);
    t->opt.weight_decay = bitsd(v[k++]); t->opt.clip = bitsd(v[k++]); t->redraw = (size_t)v[k++];
    i->data_kind = (uint32_t)v[k++]; i->data_hash = v[k++]; i->data_len = v[k++];
    i->shift = v[k++]; i->alphabet = v[k++];
    i->step = v[k++];
    if (k != nf) goto bad;
    if (i->step > t->opt.steps || im->loss_n > i->step) goto bad;
    im->floats = b + 16 + H + 8;
    return RK_OK;
bad:
    RK_FAIL(RK_EFORMAT, "checkpoint %s: inconsistent header", path);
}

int lm_ckpt_peek(const char *path, lm_ckpt_info *info)
{
    image im;
    int rc = parse(path, &im);
    if (!rc) *info = im.info;
    free(im.buf);
    return rc;
}

static void rd_floats(const uint8_t *p, float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u = get32(p + 4 * i);
        memcpy(&x[i], &u, 4);
    }
}

int lm_trainer_load(lm_trainer *t, const char *path)
{
    image im;
    int rc = parse(path, &im);
    if (rc) { free(im.buf); return rc; }
    lm_ckpt_info mine;
    lm_trainer_info(t, &mine);
    char diff[256];
    if (lm_ckpt_diff(&im.info, &mine, diff, sizeof diff)) {
        free(im.buf);
        RK_FAIL(RK_EINVAL, "checkpoint %s has another configuration (%s; checkpoint vs this "
                "run)", path, diff);
    }
    if (im.nparams != t->lay.nparams) {
        free(im.buf);
        RK_FAIL(RK_EFORMAT, "checkpoint %s: %llu parameters, the model has %zu", path,
                (unsigned long long)im.nparams, t->lay.nparams);
    }
    const size_t n = t->lay.nparams;
    rd_floats(im.floats, t->params, n);
    rd_floats(im.floats + 4 * n, t->m, n);
    rd_floats(im.floats + 8 * n, t->v, n);
    t->step = (size_t)im.info.step;
    t->loss_sum = im.loss_sum;
    t->loss_n = (size_t)im.loss_n;
    free(im.buf);
    return lm__trainer_sync_redraw(t);
}
