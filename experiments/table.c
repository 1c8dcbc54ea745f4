/* TSV tables for long runs, with resume (see table.h). */
#include "table.h"
#include "rk_file.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SUMMARY_PREFIX "# summary\t"

static int fail(table *t, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static int fail(table *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->err, sizeof t->err, fmt, ap);
    va_end(ap);
    return -1;
}

static char *dupstr(const char *s)
{
    size_t n = strlen(s) + 1;
    char *c = malloc(n);
    if (c) memcpy(c, s, n);
    return c;
}

size_t table_split(char *line, char **field, size_t max)
{
    size_t n = 0;
    char *p = line;
    for (;;) {
        if (n < max) field[n] = p;
        n++;
        char *tab = strchr(p, '\t');
        if (!tab) break;
        *tab = '\0';
        p = tab + 1;
    }
    return n;
}

static size_t count_fields(const char *s, size_t len)
{
    size_t n = 1;
    for (size_t i = 0; i < len; i++) n += s[i] == '\t';
    return n;
}

/* Does row r's key equal `key` (nkey fields joined by tabs, length klen)? */
static int key_equal(const table *t, const table_row *r, const char *key)
{
    const char *k = key;
    for (size_t i = 0; i < t->nkey; i++) {
        size_t fl = strlen(r->field[i]);
        if (strncmp(k, r->field[i], fl) != 0) return 0;
        k += fl;
        if (i + 1 < t->nkey) {
            if (*k != '\t') return 0;
            k++;
        } else if (*k != '\0' && *k != '\t') {
            return 0;
        }
    }
    return 1;
}

long table_find(const table *t, const char *key)
{
    for (size_t r = 0; r < t->nrows; r++)
        if (key_equal(t, &t->rows[r], key)) return (long)r;
    return -1;
}

int table_col(const table *t, const char *name)
{
    for (size_t i = 0; i < t->ncols; i++)
        if (strcmp(t->colname[i], name) == 0) return (int)i;
    return -1;
}

const char *table_get(const table *t, size_t r, const char *col)
{
    int c = table_col(t, col);
    if (r >= t->nrows || c < 0) return "";
    return t->rows[r].field[c];
}

double table_getd(const table *t, size_t r, const char *col)
{
    const char *s = table_get(t, r, col);
    char *end;
    double x = strtod(s, &end);
    return end == s || *end ? NAN : x;
}

/* Keep a copy of a row of text (len bytes, ncols fields). */
static int store_row(table *t, const char *text, size_t len)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        table_row *r = realloc(t->rows, cap * sizeof *r);
        if (!r) return fail(t, "out of memory");
        t->rows = r;
        t->cap = cap;
    }
    table_row *row = &t->rows[t->nrows];
    row->line = malloc(len + 1);
    row->field = malloc(t->ncols * sizeof *row->field);
    if (!row->line || !row->field) {
        free(row->line);
        free(row->field);
        return fail(t, "out of memory");
    }
    memcpy(row->line, text, len);
    row->line[len] = '\0';
    table_split(row->line, row->field, t->ncols);
    t->nrows++;
    return 0;
}

void table_close(table *t)
{
    if (t->f) fclose(t->f);
    for (size_t r = 0; r < t->nrows; r++) {
        free(t->rows[r].line);
        free(t->rows[r].field);
    }
    free(t->rows);
    free(t->colname);
    free(t->header_buf);
    free(t->path);
    char err[sizeof t->err];
    memcpy(err, t->err, sizeof err);   /* the message outlives the close */
    memset(t, 0, sizeof *t);
    memcpy(t->err, err, sizeof err);
}

/* Write `text` to path through the library's one atomic writer (temporary file, fsync, rename). */
static int write_atomic(table *t, const char *text, size_t len)
{
    const char *step = NULL;
    int e = rk__out_write_file(t->path, text, len, &step);
    if (!e) return 0;
    if (step && strcmp(step, "create") == 0)
        return fail(t, "cannot create a file next to '%s': %s", t->path, strerror(e));
    return fail(t, "cannot write '%s': %s", t->path, strerror(e));
}

/* Text buffer that grows. */
typedef struct { char *s; size_t n, cap; } sbuf;
static int sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) return -1;
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
    return 0;
}

/* Read the whole file; 1 if it does not exist, 0 on success, -1 on error. */
static int slurp(table *t, char **out, size_t *len)
{
    FILE *f = fopen(t->path, "rb");
    if (!f) {
        if (errno == ENOENT) return 1;
        return fail(t, "cannot open '%s': %s", t->path, strerror(errno));
    }
    sbuf b = { 0 };
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (sb_add(&b, chunk, n)) { fclose(f); free(b.s); return fail(t, "out of memory"); }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(b.s); return fail(t, "cannot read '%s'", t->path); }
    if (!b.s && sb_add(&b, "", 0)) return fail(t, "out of memory");
    *out = b.s;
    *len = b.n;
    return 0;
}

/* The first space-separated setting where the file's line 1 (s, n bytes) and this run's
 * differ, in the message. */
static int config_mismatch(table *t, const char *s, size_t n, const char *want)
{
    const char *a = s, *ae = s + n, *b = want;
    while (a < ae && *b) {
        const char *as = memchr(a, ' ', (size_t)(ae - a)), *bs = strchr(b, ' ');
        size_t al = as ? (size_t)(as - a) : (size_t)(ae - a);
        size_t bl = bs ? (size_t)(bs - b) : strlen(b);
        if (al != bl || memcmp(a, b, al) != 0)
            return fail(t, "'%s' was written with other settings ('%.*s' there, '%.*s' now): "
                        "remove it, or run without --resume", t->path, (int)(al > 160 ? 160 : al),
                        a, (int)(bl > 160 ? 160 : bl), b);
        a += al + (as ? 1 : 0);
        b += bl + (bs ? 1 : 0);
    }
    return fail(t, "'%s' was written with other settings (its first line is '%.*s'): remove it, "
                "or run without --resume", t->path, (int)(n > 200 ? 200 : n), s);
}

/* Parse an existing file for resume into `keep` (the content to rewrite) and the rows. */
static int parse_existing(table *t, const char *text, size_t len, const char *config_line,
                          const char *header, sbuf *keep)
{
    size_t pos = 0, lineno = 0;
    int have_header = 0;
    while (pos < len) {
        const char *s = text + pos, *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        int complete = nl != NULL;
        pos += n + (complete ? 1 : 0);
        lineno++;
        int last = pos >= len;
        if (lineno == 1) {
            if (!complete || n != strlen(config_line) || memcmp(s, config_line, n) != 0) {
                /* a file that holds only a torn first line was never started */
                if (!complete && last && n < strlen(config_line) &&
                    memcmp(s, config_line, n) == 0)
                    return 1;
                return config_mismatch(t, s, n, config_line);
            }
            if (sb_add(keep, s, n) || sb_add(keep, "\n", 1)) return fail(t, "out of memory");
            continue;
        }
        if (n > 0 && s[0] == '#') {
            size_t sl = strlen(SUMMARY_PREFIX);
            if (n >= sl && memcmp(s, SUMMARY_PREFIX, sl) == 0) {
                t->dropped_summary++;
                continue;
            }
            if (!complete) { t->torn = 1; continue; }
            if (sb_add(keep, s, n) || sb_add(keep, "\n", 1)) return fail(t, "out of memory");
            continue;
        }
        if (!have_header) {
            if (!complete && last && n <= strlen(header) && memcmp(s, header, n) == 0) {
                t->torn = 1;   /* the header itself was cut off: written again below */
                continue;
            }
            if (n != strlen(header) || memcmp(s, header, n) != 0)
                return fail(t, "'%s' line %zu: the column header differs from this version's "
                            "('%.*s'): remove the file, or run without --resume", t->path,
                            lineno, (int)(n > 200 ? 200 : n), s);
            have_header = 1;
            if (sb_add(keep, s, n) || sb_add(keep, "\n", 1)) return fail(t, "out of memory");
            continue;
        }
        if (n == 0 && complete) continue;   /* blank line */
        size_t nf = count_fields(s, n);
        if (!complete || nf != t->ncols) {
            if (last) { t->torn = 1; continue; }
            return fail(t, "'%s' line %zu has %zu fields, expected %zu (the file is damaged)",
                        t->path, lineno, nf, t->ncols);
        }
        if (store_row(t, s, n)) return -1;
        table_row *r = &t->rows[t->nrows - 1];
        for (size_t i = 0; i + 1 < t->nrows; i++) {
            const table_row *o = &t->rows[i];
            int same = 1;
            for (size_t k = 0; k < t->nkey && same; k++)
                same = strcmp(o->field[k], r->field[k]) == 0;
            if (same)
                return fail(t, "'%s' line %zu repeats the key of an earlier row", t->path,
                            lineno);
        }
        if (sb_add(keep, s, n) || sb_add(keep, "\n", 1)) return fail(t, "out of memory");
    }
    if (lineno == 0) return 1;   /* empty file */
    if (!have_header && sb_add(keep, header, strlen(header)))
        return fail(t, "out of memory");
    if (!have_header && sb_add(keep, "\n", 1)) return fail(t, "out of memory");
    t->kept = t->nrows;
    return 0;
}

int table_open(table *t, const char *path, const char *config, const char *header,
               size_t nkey, int resume)
{
    memset(t, 0, sizeof *t);
    t->path = path ? dupstr(path) : NULL;
    t->header_buf = dupstr(header);
    char *config_line = malloc(strlen(config) + 3);
    if ((path && !t->path) || !t->header_buf || !config_line) {
        free(config_line);
        fail(t, "out of memory");
        table_close(t);
        return -1;
    }
    sprintf(config_line, "# %s", config);
    t->ncols = count_fields(header, strlen(header));
    t->colname = malloc(t->ncols * sizeof *t->colname);
    if (!t->colname || nkey == 0 || nkey > t->ncols || strchr(config, '\n') ||
        strchr(header, '\n')) {
        free(config_line);
        fail(t, t->colname ? "internal error: bad table layout" : "out of memory");
        table_close(t);
        return -1;
    }
    t->nkey = nkey;
    table_split(t->header_buf, t->colname, t->ncols);

    if (!path) {   /* in memory only */
        free(config_line);
        return 0;
    }
    sbuf keep = { 0 };
    int fresh = 1, rc = 0;
    if (resume) {
        char *text = NULL;
        size_t len = 0;
        rc = slurp(t, &text, &len);
        if (rc == 0) {
            rc = parse_existing(t, text, len, config_line, header, &keep);
            if (rc == 0) fresh = 0;
            if (rc == 1) {   /* nothing usable: start over */
                for (size_t r = 0; r < t->nrows; r++) {
                    free(t->rows[r].line);
                    free(t->rows[r].field);
                }
                t->nrows = 0;
                keep.n = 0;
            }
        }
        free(text);
        if (rc < 0) {
            free(keep.s);
            free(config_line);
            table_close(t);
            return -1;
        }
    }
    if (fresh) {
        keep.n = 0;
        if (sb_add(&keep, config_line, strlen(config_line)) || sb_add(&keep, "\n", 1) ||
            sb_add(&keep, header, strlen(header)) || sb_add(&keep, "\n", 1)) {
            free(keep.s);
            free(config_line);
            fail(t, "out of memory");
            table_close(t);
            return -1;
        }
    }
    free(config_line);
    rc = write_atomic(t, keep.s, keep.n);
    free(keep.s);
    if (rc == 0) {
        t->f = fopen(t->path, "a");
        if (!t->f) rc = fail(t, "cannot open '%s' for appending: %s", t->path, strerror(errno));
    }
    if (rc) table_close(t);
    return rc;
}

static int write_line(table *t, const char *s, size_t n)
{
    if (!t->path) return 0;   /* in memory only */
    if (!t->f) return fail(t, "the table is not open");
    if (fwrite(s, 1, n, t->f) != n || fputc('\n', t->f) == EOF || fflush(t->f) != 0 ||
        fsync(fileno(t->f)) != 0)
        return fail(t, "cannot write '%s': %s", t->path, strerror(errno));
    return 0;
}

int table_add(table *t, const char *line)
{
    size_t n = strlen(line);
    if (memchr(line, '\n', n)) return fail(t, "internal error: a row contains a newline");
    size_t nf = count_fields(line, n);
    if (nf != t->ncols)
        return fail(t, "internal error: a row of %zu fields for %zu columns", nf, t->ncols);
    if (table_find(t, line) >= 0)
        return fail(t, "internal error: a second row with the key of row '%.80s'", line);
    if (write_line(t, line, n) || store_row(t, line, n)) return -1;
    if (t->on_add) t->on_add(t->on_add_arg, t, t->nrows - 1);
    return 0;
}

size_t table_row_text(const table *t, size_t r, char *buf, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < t->ncols; i++) {
        const char *f = t->rows[r].field[i];
        size_t fl = strlen(f);
        for (size_t k = 0; k < fl + (i + 1 < t->ncols); k++, n++)
            if (n + 1 < len) buf[n] = k < fl ? f[k] : '\t';
    }
    if (len) buf[n < len ? n : len - 1] = '\0';
    return n;
}

static int vformat(table *t, char **out, const char *fmt, va_list ap)
{
    va_list aq;
    va_copy(aq, ap);
    int n = vsnprintf(NULL, 0, fmt, aq);
    va_end(aq);
    if (n < 0) return fail(t, "internal error: bad row format");
    *out = malloc((size_t)n + 1);
    if (!*out) return fail(t, "out of memory");
    vsnprintf(*out, (size_t)n + 1, fmt, ap);
    return 0;
}

int table_addf(table *t, const char *fmt, ...)
{
    char *s;
    va_list ap;
    va_start(ap, fmt);
    int rc = vformat(t, &s, fmt, ap);
    va_end(ap);
    if (rc) return rc;
    rc = table_add(t, s);
    free(s);
    return rc;
}

int table_comment(table *t, const char *fmt, ...)
{
    char *s;
    va_list ap;
    va_start(ap, fmt);
    int rc = vformat(t, &s, fmt, ap);
    va_end(ap);
    if (rc) return rc;
    if (strchr(s, '\n')) { free(s); return fail(t, "internal error: a comment with a newline"); }
    size_t n = strlen(s);
    char *line = malloc(n + 3);
    if (!line) { free(s); return fail(t, "out of memory"); }
    memcpy(line, "# ", 2);
    memcpy(line + 2, s, n + 1);
    rc = write_line(t, line, n + 2);
    free(line);
    free(s);
    return rc;
}
