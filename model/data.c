/* Training data (see lm.h): a text file or Debian's fortunes, split into a training part (the
 * first 90% of the bytes) and a validation part (the last 10%); the synthetic shift task. The
 * batch order is a pure function of (seed, step, row): splitmix64 of the three. */
#include "lm_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The text files of Debian 12's `fortunes` (1:1.99.1-7.3) and of `fortunes-min`, which it
 * depends on (fortunes, literature, riddles), in C-locale order of their names: 43 files,
 * 2576674 bytes. The .dat index files and the .u8 links are not data. */
const char *const lm_fortunes_files[] = {
    "art", "ascii-art", "computers", "cookie", "debian", "definitions", "disclaimer", "drugs",
    "education", "ethnic", "food", "fortunes", "goedel", "humorists", "kids", "knghtbrd", "law",
    "linux", "linuxcookie", "literature", "love", "magic", "medicine", "men-women",
    "miscellaneous", "news", "paradoxum", "people", "perl", "pets", "platitudes", "politics",
    "pratchett", "riddles", "science", "songs-poems", "sports", "startrek", "tao",
    "translate-me", "wisdom", "work", "zippy", NULL,
};

uint64_t lm_mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 0xCBF29CE484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ULL;
    return h;
}

void lm_data_free(lm_data *d)
{
    if (!d) return;
    rk__free(d->bytes);
    memset(d, 0, sizeof *d);
}

static void finish_text(lm_data *d)
{
    d->kind = LM_DATA_TEXT;
    d->n_train = (size_t)((double)d->n * (1.0 - LM_VAL_FRAC));
    d->hash = fnv1a(d->bytes, d->n);
}

/* Append the whole file to d->bytes (grown as needed; cap: its capacity). */
static int append_file(lm_data *d, size_t *cap, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) RK_FAIL(RK_EIO, "cannot open %s: %s", path, strerror(errno));
    for (;;) {
        if (d->n == *cap) {
            size_t nc = *cap ? 2 * *cap : (size_t)1 << 20;
            uint8_t *p = rk__alloc(nc);
            if (!p) {
                fclose(f);
                RK_FAIL(RK_ENOMEM, "cannot allocate %zu bytes for %s", nc, path);
            }
            if (d->n) memcpy(p, d->bytes, d->n);
            rk__free(d->bytes);
            d->bytes = p;
            *cap = nc;
        }
        size_t got = fread(d->bytes + d->n, 1, *cap - d->n, f);
        d->n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    int e = errno;
    fclose(f);
    if (bad) RK_FAIL(RK_EIO, "cannot read %s: %s", path, strerror(e));
    return RK_OK;
}

int lm_data_load_file(lm_data *d, const char *path)
{
    memset(d, 0, sizeof *d);
    size_t cap = 0;
    int rc = append_file(d, &cap, path);
    if (rc) { lm_data_free(d); return rc; }
    if (d->n == 0) {
        lm_data_free(d);
        RK_FAIL(RK_EFORMAT, "%s is empty", path);
    }
    finish_text(d);
    snprintf(d->desc, sizeof d->desc, "%s (%zu bytes)", path, d->n);
    return RK_OK;
}

int lm_data_load_fortunes(lm_data *d, const char *dir)
{
    memset(d, 0, sizeof *d);
    if (!dir) dir = LM_FORTUNES_DIR;
    size_t cap = 0, nfiles = 0;
    for (const char *const *f = lm_fortunes_files; *f; f++, nfiles++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, *f);
        int rc = append_file(d, &cap, path);
        if (rc) {
            char msg[1100];
            snprintf(msg, sizeof msg, "%s", rk_last_error());
            lm_data_free(d);
            return rk__fail(rc, "the fortunes data: %s (install the Debian package: apt-get "
                            "install fortunes)", msg);
        }
    }
    if (d->n == 0) {
        lm_data_free(d);
        RK_FAIL(RK_EFORMAT, "the fortunes data in %s is empty", dir);
    }
    finish_text(d);
    snprintf(d->desc, sizeof d->desc, "fortunes (%zu files in %s, %zu bytes)", nfiles, dir, d->n);
    return RK_OK;
}

int lm_data_shift(lm_data *d, size_t shift, size_t alphabet)
{
    memset(d, 0, sizeof *d);
    if (alphabet < 2 || alphabet > LM_VOCAB)
        RK_FAIL(RK_EINVAL, "shift task: alphabet %zu (2 .. %d)", alphabet, LM_VOCAB);
    d->kind = LM_DATA_SHIFT;
    d->shift = shift;
    d->alphabet = alphabet;
    d->hash = lm_mix64(((uint64_t)shift << 32) ^ (uint64_t)alphabet ^ 0x5A1F7ULL);
    snprintf(d->desc, sizeof d->desc, "shift task (target = the token %zu places back, %zu "
             "symbols)", shift, alphabet);
    return RK_OK;
}

/* Key of a sequence: its domain (training or validation), stream (the seed), index (the step)
 * and row. */
#define TRAIN_DOMAIN 0xDA7A5EEDULL
#define VAL_DOMAIN 0x76616C6964ULL

static uint64_t seq_key(uint64_t domain, uint64_t stream, uint64_t index, uint64_t row)
{
    return lm_mix64(lm_mix64(lm_mix64(lm_mix64(domain) ^ stream) + index) + row);
}

static void shift_seq(const lm_data *d, uint64_t key, size_t T, int32_t *tok, int32_t *tgt)
{
    for (size_t t = 0; t < T; t++)
        tok[t] = (int32_t)(lm_mix64(key + t) % d->alphabet);
    for (size_t t = 0; t < T; t++) tgt[t] = t >= d->shift ? tok[t - d->shift] : -1;
}

void lm_data_train_batch(const lm_data *d, unsigned long seed, uint64_t step, size_t B,
                         size_t T, int32_t *tokens, int32_t *targets)
{
    for (size_t b = 0; b < B; b++) {
        uint64_t key = seq_key(TRAIN_DOMAIN, (uint64_t)seed, step, b);
        int32_t *tok = tokens + b * T, *tgt = targets + b * T;
        if (d->kind == LM_DATA_SHIFT) {
            shift_seq(d, key, T, tok, tgt);
            continue;
        }
        /* a window of T + 1 bytes inside the training part (n_train >= T + 1: checked by the
         * trainer) */
        size_t start = (size_t)(key % (uint64_t)(d->n_train - T));
        const uint8_t *p = d->bytes + start;
        for (size_t t = 0; t < T; t++) {
            tok[t] = p[t];
            tgt[t] = p[t + 1];
        }
    }
}

size_t lm_data_val_windows(const lm_data *d, size_t T, size_t max_tokens)
{
    size_t want = max_tokens / T;
    if (want == 0) want = 1;
    if (d->kind == LM_DATA_SHIFT) return want;
    size_t nval = d->n - d->n_train;
    size_t have = nval > T ? (nval - 1) / T : 0;
    return want < have ? want : have;
}

void lm_data_val_batch(const lm_data *d, size_t T, size_t w0, size_t nwin, size_t B,
                       int32_t *tokens, int32_t *targets)
{
    for (size_t b = 0; b < B; b++) {
        int32_t *tok = tokens + b * T, *tgt = targets + b * T;
        size_t w = w0 + b;
        if (w >= nwin) {
            for (size_t t = 0; t < T; t++) {
                tok[t] = 0;
                tgt[t] = -1;
            }
            continue;
        }
        if (d->kind == LM_DATA_SHIFT) {
            shift_seq(d, seq_key(VAL_DOMAIN, 0, 0, w), T, tok, tgt);
            continue;
        }
        const uint8_t *p = d->bytes + d->n_train + w * T;
        for (size_t t = 0; t < T; t++) {
            tok[t] = p[t];
            tgt[t] = p[t + 1];
        }
    }
}
