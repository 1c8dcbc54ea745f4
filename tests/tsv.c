/* Reading the sweeps' TSV tables in tests (see tsv.h). */
#include "tsv.h"
#include "check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *tsv_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = '\0';
    fclose(f);
    if (len) *len = (size_t)n;
    return b;
}

void tsv_spit(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* The lines for which keep(line, arg) holds. */
static char *select_lines(const char *text, int (*keep)(const char *, const void *),
                          const void *arg)
{
    size_t n = strlen(text);
    char *out = malloc(n + 1), *o = out;
    assert_non_null(out);
    for (const char *s = text; *s;) {
        const char *nl = strchr(s, '\n');
        size_t l = nl ? (size_t)(nl - s) + 1 : strlen(s);
        if (keep(s, arg)) { memcpy(o, s, l); o += l; }
        s += l;
    }
    *o = '\0';
    return out;
}

static int starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int data_or_prefix(const char *s, const void *prefix)
{
    return prefix ? starts(s, prefix) : s[0] != '#';
}

static int none_of(const char *s, const void *prefixes)
{
    for (const char *const *p = prefixes; *p; p++)
        if (starts(s, *p)) return 0;
    return 1;
}

char *tsv_filter(const char *text, const char *prefix)
{
    return select_lines(text, data_or_prefix, prefix);
}

char *tsv_without(const char *text, const char *const *prefixes)
{
    return select_lines(text, none_of, prefixes);
}

char *tsv_keys(const char *text, int nkeys)
{
    char *rows = tsv_filter(text, NULL), *out = malloc(strlen(rows) + 1), *o = out;
    assert_non_null(out);
    for (char *s = rows; *s;) {
        char *nl = strchr(s, '\n');
        size_t l = nl ? (size_t)(nl - s) : strlen(s);
        int f = 0;
        for (size_t i = 0; i < l; i++) {
            if (s[i] == '\t' && ++f == nkeys) break;
            *o++ = s[i];
        }
        *o++ = '\n';
        s += l + (nl ? 1 : 0);
    }
    *o = '\0';
    free(rows);
    return out;
}

size_t tsv_offset_after_rows(const char *text, int k, size_t cut)
{
    const char *s = text;
    int header = 0, rows = 0;
    while (*s) {
        const char *nl = strchr(s, '\n');
        if (!nl) break;
        if (s[0] != '#') {
            if (!header) header = 1;
            else if (rows++ == k) return (size_t)(s - text) + cut;
        }
        s = nl + 1;
    }
    fail_msg("fewer than %d rows", k + 1);
    return 0;
}

int tsv_count_rows(const char *text)
{
    char *rows = tsv_filter(text, NULL);
    int n = -1;   /* the header */
    for (char *s = rows; *s; s++) n += *s == '\n';
    free(rows);
    return n;
}


void tsv_assert_same_rows(const char *got_path, const char *want_path)
{
    char *a = tsv_slurp(got_path, NULL), *b = tsv_slurp(want_path, NULL);
    char *ra = tsv_filter(a, NULL), *rb = tsv_filter(b, NULL);
    if (strcmp(ra, rb) != 0)
        fail_msg("%s: rows differ:\n%s\n--- %s ---\n%s", got_path, ra, want_path, rb);
    free(a);
    free(b);
    free(ra);
    free(rb);
}
