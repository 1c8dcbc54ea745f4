/* NumPy .npy reader and writer: format 1.0, 2.0 and 3.0; '<f4' and '<f8'; C order.
 *
 * Layout (numpy/lib/format.py, NEP 1):
 *   "\x93NUMPY"  major minor  HLEN  header  data
 *   HLEN is uint16 LE in 1.0, uint32 LE in 2.0 and 3.0 (3.0 only allows a UTF-8 header).
 *   header is a Python dict literal padded with spaces and ended by '\n', e.g.
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }          ...\n
 *   data is count * itemsize bytes, row-major, nothing after it.
 *
 * The header is read by a small strict parser, not eval and not sscanf: the three keys in any
 * order, either quote style, any whitespace, optional trailing comma; nothing else. Syntax errors,
 * missing, duplicate or unknown keys are RK_EFORMAT; valid headers we do not read (other dtypes,
 * big-endian, Fortran order, > RK_NPY_MAXDIM axes) are RK_EUNSUP. The data size is checked against
 * the header before anything is allocated, so a header claiming 1e18 elements costs nothing.
 *
 * The writer reproduces numpy's bytes exactly (np.save of a C-order '<f4'/'<f8' array, numpy 1.x
 * and 2.x alike) through the one atomic writer (rk_file.h): temporary file + fsync + rename(2),
 * devices and FIFOs written directly, symbolic links followed. */
#include "rk_internal.h"
#include "rk_file.h"
#include "rk_npy.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* .npy payloads are little-endian and are copied with memcpy, so the host must be too (every
 * target we build for is: x86-64, aarch64, riscv64, ppc64le). A big-endian port would byte-swap
 * in load and save; until then refuse to build rather than read garbage. */
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "ropekit's .npy I/O assumes a little-endian host");
#else
#error "cannot tell the byte order (no __BYTE_ORDER__): ropekit's .npy I/O needs little-endian"
#endif
_Static_assert(sizeof(float) == 4 && FLT_MANT_DIG == 24, "float must be IEEE binary32");
_Static_assert(sizeof(double) == 8 && DBL_MANT_DIG == 53, "double must be IEEE binary64");

#define NPY_MAGIC          "\x93NUMPY"
#define NPY_MAGIC_LEN      6
#define NPY_ALIGN          64                   /* numpy's ARRAY_ALIGN                     */
#define NPY_GROWTH_DIGITS  21                   /* numpy's GROWTH_AXIS_MAX_DIGITS          */
#define NPY_MAX_HEADER     ((size_t)1 << 20)    /* numpy writes < 1 KiB; its reader stops at 10 KB */
#define NPY_MEM_NAME       "npy buffer"         /* stands for the path in load_mem messages */

static size_t dtype_size(rk_dtype dt) { return dt == RK_F64 ? sizeof(double) : sizeof(float); }
static int dtype_ok(rk_dtype dt) { return dt == RK_F32 || dt == RK_F64; }
static const char *dtype_descr(rk_dtype dt) { return dt == RK_F64 ? "<f8" : "<f4"; }

/* Product of the axes. An empty axis makes the count 0 whatever the others are; otherwise the
 * product is overflow-checked. Nonzero on overflow. */
static int shape_count(int ndim, const size_t *shape, size_t *count)
{
    *count = 0;
    for (int i = 0; i < ndim; i++)
        if (shape[i] == 0) { *count = 0; return 0; }
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        if (rk__mul(n, shape[i], &n)) return 1;
    *count = n;
    return 0;
}

/* Python repr of a tuple of sizes: "()", "(5,)", "(2, 3)". Needs cap >= RK_NPY_MAXDIM * 22 + 3. */
static void fmt_tuple(char *buf, size_t cap, int ndim, const size_t *v)
{
    size_t n = 0;
    buf[n++] = '(';
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, i ? ", %zu" : "%zu", v[i]);
    if (n < cap) snprintf(buf + n, cap - n, ndim == 1 ? ",)" : ")");
    buf[cap - 1] = '\0';
}
#define TUPLE_CAP (RK_NPY_MAXDIM * 22 + 4)

/* Copy header text for a message: at most cap - 4 bytes, non-printables as '?', "..." if cut. */
static const char *printable(const unsigned char *s, size_t n, char *out, size_t cap)
{
    size_t k = 0;
    for (; k < n && k + 4 < cap; k++) out[k] = (s[k] >= 0x20 && s[k] < 0x7f) ? (char)s[k] : '?';
    if (k < n) { memcpy(out + k, "...", 3); k += 3; }
    out[k] = '\0';
    return out;
}

/* Validate an rk_array given to save / check_finite and return its byte count. */
static int check_array(const char *what, const rk_array *a, size_t *bytes)
{
    if (!dtype_ok(a->dtype))
        RK_FAIL(RK_EINVAL, "%s: dtype %d is neither RK_F32 nor RK_F64", what, (int)a->dtype);
    if (a->ndim < 0 || a->ndim > RK_NPY_MAXDIM)
        RK_FAIL(RK_EINVAL, "%s: ndim %d is outside 0..%d", what, a->ndim, RK_NPY_MAXDIM);
    size_t n;
    char sh[TUPLE_CAP];
    fmt_tuple(sh, sizeof sh, a->ndim, a->shape);
    if (shape_count(a->ndim, a->shape, &n))
        RK_FAIL(RK_EOVERFLOW, "%s: shape %s: element count overflows size_t", what, sh);
    if (n != a->count)
        RK_FAIL(RK_EDIM, "%s: count is %zu but shape %s holds %zu elements", what, a->count, sh, n);
    if (rk__bytes(n, dtype_size(a->dtype), bytes))
        RK_FAIL(RK_EOVERFLOW, "%s: shape %s: byte count exceeds PTRDIFF_MAX", what, sh);
    if (n > 0 && a->data == NULL)
        RK_FAIL(RK_EINVAL, "%s: data is NULL for %zu elements", what, n);
    return RK_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Arrays                                                                               */
/* ------------------------------------------------------------------------------------ */
int rk_array_alloc(rk_array *a, rk_dtype dt, int ndim, const size_t *shape)
{
    rk__clear_error();
    if (!a) RK_FAIL(RK_EINVAL, "rk_array_alloc: a is NULL");
    *a = (rk_array){ 0 };
    if (!shape && ndim > 0) RK_FAIL(RK_EINVAL, "rk_array_alloc: shape is NULL");
    if (!dtype_ok(dt))
        RK_FAIL(RK_EINVAL, "rk_array_alloc: dtype %d is neither RK_F32 nor RK_F64", (int)dt);
    if (ndim < 0 || ndim > RK_NPY_MAXDIM)
        RK_FAIL(RK_EINVAL, "rk_array_alloc: ndim %d is outside 0..%d", ndim, RK_NPY_MAXDIM);
    if (ndim > 0 && !shape) RK_FAIL(RK_EINVAL, "rk_array_alloc: shape is NULL, ndim %d", ndim);
    size_t count, bytes;
    char sh[TUPLE_CAP];
    fmt_tuple(sh, sizeof sh, ndim, shape);
    if (shape_count(ndim, shape, &count))
        RK_FAIL(RK_EOVERFLOW, "rk_array_alloc: shape %s: element count overflows size_t", sh);
    if (rk__bytes(count, dtype_size(dt), &bytes))
        RK_FAIL(RK_EOVERFLOW, "rk_array_alloc: shape %s: byte count exceeds PTRDIFF_MAX", sh);
    void *p = rk__alloc(bytes);
    if (!p) RK_FAIL(RK_ENOMEM, "rk_array_alloc: cannot allocate %zu bytes for shape %s", bytes, sh);
    a->dtype = dt;
    a->ndim = ndim;
    for (int i = 0; i < ndim; i++) a->shape[i] = shape[i];
    a->count = count;
    a->data = p;
    return RK_OK;
}

void rk_array_free(rk_array *a)
{
    if (!a) return;
    rk__free(a->data);
    *a = (rk_array){ 0 };
}

int rk_array_check_finite(const rk_array *a, const char *name)
{
    rk__clear_error();
    if (!name) name = "array";
    if (!a) RK_FAIL(RK_EINVAL, "%s: array is NULL", name);
    size_t bytes, bad = a->count;
    int rc = check_array(name, a, &bytes);
    if (rc) return rc;
    double v = 0;
    if (a->dtype == RK_F32) {
        const float *x = a->data;
        for (size_t i = 0; i < a->count; i++)
            if (!isfinite(x[i])) { bad = i; v = x[i]; break; }
    } else {
        const double *x = a->data;
        for (size_t i = 0; i < a->count; i++)
            if (!isfinite(x[i])) { bad = i; v = x[i]; break; }
    }
    if (bad == a->count) return RK_OK;
    size_t idx[RK_NPY_MAXDIM];
    for (int d = a->ndim; d-- > 0;) { idx[d] = bad % a->shape[d]; bad /= a->shape[d]; }
    char at[TUPLE_CAP];
    fmt_tuple(at, sizeof at, a->ndim, idx);
    RK_FAIL(RK_ENONFINITE, "%s: element %s is %s", name, at,
            isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf");
}

/* ------------------------------------------------------------------------------------ */
/* Reading: preamble, header parser, size checks                                        */
/* ------------------------------------------------------------------------------------ */
/* The fixed part. p holds the first min(total, 12) bytes of a file of `total` bytes. On success
 * the header is bytes [*hoff, *hoff + *hlen) and lies inside the file. */
static int parse_preamble(const char *src, const unsigned char *p, size_t total, size_t *hoff,
                          size_t *hlen)
{
    size_t m = total < NPY_MAGIC_LEN ? total : NPY_MAGIC_LEN;
    if (m > 0 && memcmp(p, NPY_MAGIC, m) != 0)
        RK_FAIL(RK_EFORMAT, "%s: not a .npy file (it does not start with \\x93NUMPY)", src);
    if (total < 8)
        RK_FAIL(RK_EFORMAT, "%s: truncated: %zu bytes, too short for the .npy preamble", src,
                total);
    unsigned major = p[6], minor = p[7];
    size_t lenbytes;
    if (major == 1 && minor == 0) lenbytes = 2;
    else if ((major == 2 || major == 3) && minor == 0) lenbytes = 4;   /* 3.0: UTF-8 header */
    else RK_FAIL(RK_EUNSUP, "%s: .npy format version %u.%u is not supported (1.0, 2.0, 3.0 are)",
                 src, major, minor);
    if (total < 8 + lenbytes)
        RK_FAIL(RK_EFORMAT, "%s: truncated: %zu bytes, too short for the .npy %u.0 preamble", src,
                total, major);
    size_t n = (size_t)p[8] | (size_t)p[9] << 8;
    if (lenbytes == 4) n |= (size_t)p[10] << 16 | (size_t)p[11] << 24;
    *hoff = 8 + lenbytes;
    *hlen = n;
    if (n == 0) RK_FAIL(RK_EFORMAT, "%s: header length is 0", src);
    if (n > NPY_MAX_HEADER)
        RK_FAIL(RK_EFORMAT, "%s: header length %zu is absurd (limit %zu bytes)", src, n,
                NPY_MAX_HEADER);
    if (n > total - *hoff)
        RK_FAIL(RK_EFORMAT, "%s: truncated: header length %zu runs past the end of the file "
                "(%zu bytes)", src, n, total);
    return RK_OK;
}

/* What the header said. Spans point into the header text. */
typedef struct {
    int have_descr, have_fortran, have_shape;
    const unsigned char *descr;
    size_t descr_len;
    int descr_list;                 /* structured dtype: a list, kept only to be named       */
    int fortran;
    int ndim;                       /* axes seen; may exceed RK_NPY_MAXDIM (then not stored) */
    size_t shape[RK_NPY_MAXDIM];
    int overflow_axis;              /* 1 + first axis whose value does not fit size_t, or 0  */
} npy_hdr;

typedef struct {
    const char *src;
    const unsigned char *p, *beg, *end;
    size_t base;                    /* file offset of beg, for messages                      */
} cursor;

static int peek(const cursor *c) { return c->p < c->end ? *c->p : -1; }

static void skip_ws(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int syntax(const cursor *c, int code, const char *what)
{
    char found[16];
    int ch = peek(c);
    if (ch < 0) snprintf(found, sizeof found, "end of header");
    else if (ch >= 0x20 && ch < 0x7f) snprintf(found, sizeof found, "'%c'", ch);
    else snprintf(found, sizeof found, "byte 0x%02x", (unsigned)ch);
    RK_FAIL(code, "%s: malformed .npy header at byte %zu: %s, found %s", c->src,
            c->base + (size_t)(c->p - c->beg), what, found);
}

/* A Python string literal, either quote style. No escapes (numpy never writes any) and no
 * prefixes (b'', u''). */
static int parse_str(cursor *c, const char *what, const unsigned char **s, size_t *n)
{
    int q = peek(c);
    if (q != '\'' && q != '"') return syntax(c, RK_EFORMAT, what);
    const unsigned char *start = ++c->p;
    for (; c->p < c->end && *c->p != q; c->p++) {
        if (*c->p == '\\')
            return syntax(c, RK_EUNSUP, "escape sequences in header strings are not supported");
        if (*c->p == '\n' || *c->p == '\r') return syntax(c, RK_EFORMAT, "unterminated string");
    }
    if (c->p == c->end) return syntax(c, RK_EFORMAT, "unterminated string");
    *s = start;
    *n = (size_t)(c->p - start);
    c->p++;
    return RK_OK;
}

/* A structured dtype's descr is a list of tuples, [('x', '<f4'), ('y', '<i4', (2,))]. It is
 * skipped by bracket matching (strings respected), only to be named in the RK_EUNSUP message. */
static int skip_list(cursor *c)
{
    char closers[32];               /* closers expected, innermost last */
    size_t depth = 0;
    while (c->p < c->end) {
        int ch = *c->p;
        if (ch == '\'' || ch == '"') {
            for (c->p++; c->p < c->end && *c->p != ch; c->p++)
                if (*c->p == '\\' && c->p + 1 < c->end) c->p++;
            if (c->p == c->end) break;
        } else if (ch == '[' || ch == '(' || ch == '{') {
            if (depth == sizeof closers) return syntax(c, RK_EFORMAT, "descr nested too deeply");
            closers[depth++] = ch == '[' ? ']' : ch == '(' ? ')' : '}';
        } else if (ch == ']' || ch == ')' || ch == '}') {
            if (depth == 0 || closers[depth - 1] != ch)
                return syntax(c, RK_EFORMAT, "unbalanced bracket in descr");
            if (--depth == 0) { c->p++; return RK_OK; }
        }
        c->p++;
    }
    return syntax(c, RK_EFORMAT, "unterminated descr list");
}

static int is_ident(int ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_';
}

static int parse_bool(cursor *c, int *v)
{
    size_t left = (size_t)(c->end - c->p);
    const char *words[2] = { "False", "True" };
    for (int b = 0; b < 2; b++) {
        size_t n = strlen(words[b]);
        if (left >= n && memcmp(c->p, words[b], n) == 0 &&
            (left == n || !is_ident(c->p[n]))) {
            c->p += n;
            *v = b;
            return RK_OK;
        }
    }
    return syntax(c, RK_EFORMAT, "fortran_order must be True or False");
}

/* A non-negative Python int literal: no sign, no leading zeros, no '_'; a Python 2 'L' suffix is
 * accepted as numpy's reader does. A value beyond SIZE_MAX is consumed and flagged. */
static int parse_dim(cursor *c, size_t *v, int *overflow)
{
    int ch = peek(c);
    if (ch == '-') return syntax(c, RK_EFORMAT, "negative dimension in shape");
    if (ch < '0' || ch > '9') return syntax(c, RK_EFORMAT, "expected a non-negative integer");
    if (ch == '0' && c->p + 1 < c->end && c->p[1] >= '0' && c->p[1] <= '9')
        return syntax(c, RK_EFORMAT, "leading zero in an integer");
    size_t x = 0;
    *overflow = 0;
    for (; c->p < c->end && *c->p >= '0' && *c->p <= '9'; c->p++)
        if (!*overflow && (rk__mul(x, 10, &x) || rk__add(x, (size_t)(*c->p - '0'), &x)))
            *overflow = 1;
    if (peek(c) == 'L') c->p++;
    if (is_ident(peek(c)) || peek(c) == '.')
        return syntax(c, RK_EFORMAT, "dimensions must be plain integers");
    *v = x;
    return RK_OK;
}

/* "()", "(n,)", "(n, m)", "(n, m,)". "(n)" is an int in Python, not a tuple. */
static int parse_shape(cursor *c, npy_hdr *h)
{
    if (peek(c) != '(') return syntax(c, RK_EFORMAT, "shape must be a tuple such as (2, 3)");
    c->p++;
    skip_ws(c);
    h->ndim = 0;
    if (peek(c) == ')') { c->p++; return RK_OK; }
    for (;;) {
        size_t v = 0;
        int of = 0, rc = parse_dim(c, &v, &of);
        if (rc) return rc;
        if (h->ndim < RK_NPY_MAXDIM) h->shape[h->ndim] = v;
        if (of && !h->overflow_axis) h->overflow_axis = h->ndim + 1;
        h->ndim++;
        skip_ws(c);
        if (peek(c) == ',') {
            c->p++;
            skip_ws(c);
            if (peek(c) == ')') { c->p++; return RK_OK; }
            continue;
        }
        if (peek(c) != ')') return syntax(c, RK_EFORMAT, "expected ',' or ')' in shape");
        if (h->ndim == 1)
            return syntax(c, RK_EFORMAT, "shape (n) is an int, not a tuple (1-D is (n,))");
        c->p++;
        return RK_OK;
    }
}

static int key_is(const unsigned char *k, size_t n, const char *name)
{
    return n == strlen(name) && memcmp(k, name, n) == 0;
}

/* The header text (hlen bytes at file offset base) as a dict with exactly the three keys. */
static int parse_header(const char *src, const unsigned char *text, size_t len, size_t base,
                        npy_hdr *h)
{
    *h = (npy_hdr){ 0 };
    if (len == 0 || text[len - 1] != '\n')
        RK_FAIL(RK_EFORMAT, "%s: malformed .npy header: it does not end with a newline", src);
    cursor c = { src, text, text, text + len - 1, base };
    while (peek(&c) == ' ' || peek(&c) == '\t') c.p++;
    if (peek(&c) != '{') return syntax(&c, RK_EFORMAT, "expected '{' (the header is a dict)");
    c.p++;
    skip_ws(&c);
    while (peek(&c) != '}') {
        const unsigned char *key = NULL, *at = c.p;
        size_t klen = 0;
        int rc = parse_str(&c, "expected a quoted key or '}'", &key, &klen);
        if (rc) return rc;
        int *seen = key_is(key, klen, "descr") ? &h->have_descr
                  : key_is(key, klen, "fortran_order") ? &h->have_fortran
                  : key_is(key, klen, "shape") ? &h->have_shape : NULL;
        char kname[40];
        printable(key, klen, kname, sizeof kname);
        if (!seen)
            RK_FAIL(RK_EFORMAT, "%s: malformed .npy header at byte %zu: unexpected key '%s' "
                    "(only 'descr', 'fortran_order', 'shape')", src,
                    base + (size_t)(at - text), kname);
        if (*seen)
            RK_FAIL(RK_EFORMAT, "%s: malformed .npy header at byte %zu: duplicate key '%s'", src,
                    base + (size_t)(at - text), kname);
        *seen = 1;
        skip_ws(&c);
        if (peek(&c) != ':') return syntax(&c, RK_EFORMAT, "expected ':' after the key");
        c.p++;
        skip_ws(&c);
        if (seen == &h->have_descr) {
            const unsigned char *start = c.p;
            if (peek(&c) == '[') {
                rc = skip_list(&c);
                h->descr_list = 1;
                h->descr = start;
                h->descr_len = (size_t)(c.p - start);
            } else {
                rc = parse_str(&c, "descr must be a string such as '<f4'", &h->descr,
                               &h->descr_len);
            }
        } else if (seen == &h->have_fortran) {
            rc = parse_bool(&c, &h->fortran);
        } else {
            rc = parse_shape(&c, h);
        }
        if (rc) return rc;
        skip_ws(&c);
        if (peek(&c) == ',') { c.p++; skip_ws(&c); continue; }
        if (peek(&c) != '}') return syntax(&c, RK_EFORMAT, "expected ',' or '}'");
    }
    c.p++;
    while (peek(&c) == ' ') c.p++;
    if (c.p != c.end)
        return syntax(&c, RK_EFORMAT, "only space padding may follow the dict");
    const char *missing = !h->have_descr ? "descr" : !h->have_fortran ? "fortran_order"
                        : !h->have_shape ? "shape" : NULL;
    if (missing) RK_FAIL(RK_EFORMAT, "%s: malformed .npy header: no '%s' key", src, missing);
    return RK_OK;
}

typedef struct {
    rk_dtype dtype;
    int      ndim;
    size_t   shape[RK_NPY_MAXDIM];
    size_t   count, bytes;
} npy_meta;

/* What we can read of a syntactically valid header. */
static int header_meta(const char *src, const npy_hdr *h, npy_meta *m)
{
    char name[48];
    printable(h->descr, h->descr_len, name, sizeof name);
    if (h->descr_list)
        RK_FAIL(RK_EUNSUP, "%s: structured dtype %s is not supported (only '<f4' and '<f8')", src,
                name);
    if (key_is(h->descr, h->descr_len, "<f4")) m->dtype = RK_F32;
    else if (key_is(h->descr, h->descr_len, "<f8")) m->dtype = RK_F64;
    else if (key_is(h->descr, h->descr_len, ">f4") || key_is(h->descr, h->descr_len, ">f8"))
        RK_FAIL(RK_EUNSUP, "%s: dtype '%s' is big-endian; only little-endian '<f4' and '<f8' "
                "are read (save a.astype('<f%c'))", src, name, name[2]);
    else
        RK_FAIL(RK_EUNSUP, "%s: dtype '%s' is not supported (only '<f4' float32 and '<f8' "
                "float64)", src, name);
    if (h->fortran)
        RK_FAIL(RK_EUNSUP, "%s: fortran_order True is not supported (save "
                "np.ascontiguousarray(a))", src);
    if (h->ndim > RK_NPY_MAXDIM)
        RK_FAIL(RK_EUNSUP, "%s: %d axes, more than RK_NPY_MAXDIM = %d", src, h->ndim,
                RK_NPY_MAXDIM);
    if (h->overflow_axis)
        RK_FAIL(RK_EOVERFLOW, "%s: shape axis %d does not fit size_t", src, h->overflow_axis - 1);
    m->ndim = h->ndim;
    for (int i = 0; i < h->ndim; i++) m->shape[i] = h->shape[i];
    char sh[TUPLE_CAP];
    fmt_tuple(sh, sizeof sh, m->ndim, m->shape);
    if (shape_count(m->ndim, m->shape, &m->count))
        RK_FAIL(RK_EOVERFLOW, "%s: shape %s: element count overflows size_t", src, sh);
    if (rk__bytes(m->count, dtype_size(m->dtype), &m->bytes))
        RK_FAIL(RK_EOVERFLOW, "%s: shape %s of '%s': byte count exceeds PTRDIFF_MAX", src, sh,
                name);
    return RK_OK;
}

static int check_data_len(const char *src, size_t want, size_t have)
{
    if (have < want)
        RK_FAIL(RK_EFORMAT, "%s: truncated: header says %zu bytes of data, file has %zu", src,
                want, have);
    if (have > want)
        RK_FAIL(RK_EFORMAT, "%s: trailing bytes: header says %zu bytes of data, file has %zu",
                src, want, have);
    return RK_OK;
}

/* Only ENOMEM can happen here (the header was validated); the message names the file. */
static int meta_alloc(const char *src, const npy_meta *m, rk_array *out)
{
    if (rk_array_alloc(out, m->dtype, m->ndim, m->shape) == RK_OK) return RK_OK;
    RK_FAIL(RK_ENOMEM, "%s: cannot allocate %zu bytes for the data", src, m->bytes);
}

int rk_npy_load_mem(const void *buf, size_t len, rk_array *out)
{
    rk__clear_error();
    if (!out) RK_FAIL(RK_EINVAL, "rk_npy_load_mem: out is NULL");
    *out = (rk_array){ 0 };
    if (!buf && len > 0) RK_FAIL(RK_EINVAL, "rk_npy_load_mem: buf is NULL, len %zu", len);
    const unsigned char *p = buf;
    size_t hoff = 0, hlen = 0;
    npy_hdr h;
    npy_meta m = { 0 };
    int rc = parse_preamble(NPY_MEM_NAME, p, len, &hoff, &hlen);
    if (!rc) rc = parse_header(NPY_MEM_NAME, p + hoff, hlen, hoff, &h);
    if (!rc) rc = header_meta(NPY_MEM_NAME, &h, &m);
    if (!rc) rc = check_data_len(NPY_MEM_NAME, m.bytes, len - hoff - hlen);
    if (!rc) rc = meta_alloc(NPY_MEM_NAME, &m, out);
    if (rc) return rc;
    if (m.bytes) memcpy(out->data, p + hoff + hlen, m.bytes);
    return RK_OK;
}

static int read_exact(const char *path, FILE *f, void *buf, size_t n, size_t at)
{
    if (n == 0 || fread(buf, 1, n, f) == n) return RK_OK;
    if (ferror(f))
        RK_FAIL(RK_EIO, "%s: read error near byte %zu: %s", path, at, strerror(errno));
    RK_FAIL(RK_EFORMAT, "%s: truncated: the file shrank while being read (%zu bytes wanted at "
            "byte %zu)", path, n, at);
}

/* f is a regular file of `total` bytes, positioned at 0. */
static int load_stream(const char *path, FILE *f, size_t total, rk_array *out)
{
    unsigned char pre[12];
    size_t hoff = 0, hlen = 0;
    int rc = read_exact(path, f, pre, total < sizeof pre ? total : sizeof pre, 0);
    if (!rc) rc = parse_preamble(path, pre, total, &hoff, &hlen);
    if (rc) return rc;
    unsigned char *text = rk__alloc(hlen);
    if (!text) RK_FAIL(RK_ENOMEM, "%s: cannot allocate %zu bytes for the header", path, hlen);
    npy_hdr h;
    npy_meta m = { 0 };
    if (fseek(f, (long)hoff, SEEK_SET) != 0)
        rc = rk__fail(RK_EIO, "%s: cannot seek: %s", path, strerror(errno));
    if (!rc) rc = read_exact(path, f, text, hlen, hoff);
    if (!rc) rc = parse_header(path, text, hlen, hoff, &h);
    if (!rc) rc = header_meta(path, &h, &m);     /* the spans in h point into text */
    rk__free(text);
    if (!rc) rc = check_data_len(path, m.bytes, total - hoff - hlen);
    if (!rc) rc = meta_alloc(path, &m, out);
    if (!rc) rc = read_exact(path, f, out->data, m.bytes, hoff + hlen);
    if (!rc && fgetc(f) != EOF)
        rc = rk__fail(RK_EFORMAT, "%s: the file grew while being read (more than %zu bytes)",
                      path, total);
    if (rc) rk_array_free(out);
    return rc;
}

int rk_npy_load(const char *path, rk_array *out)
{
    rk__clear_error();
    if (!out) RK_FAIL(RK_EINVAL, "rk_npy_load: out is NULL");
    *out = (rk_array){ 0 };
    if (!path) RK_FAIL(RK_EINVAL, "rk_npy_load: path is NULL");
    struct stat st;
    int fd, rc = rk__in_open(path, &fd, &st);
    if (rc) return rc;
    if (st.st_size < 0 || (uintmax_t)st.st_size > SIZE_MAX) {
        close(fd);
        RK_FAIL(RK_EOVERFLOW, "%s: file size %jd does not fit size_t", path,
                (intmax_t)st.st_size);
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        int e = errno;
        close(fd);
        RK_FAIL(RK_EIO, "%s: cannot open: %s", path, strerror(e));
    }
    rc = load_stream(path, f, (size_t)st.st_size, out);
    fclose(f);
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* Writing                                                                              */
/* ------------------------------------------------------------------------------------ */
/* The bytes np.save writes before the data (numpy/lib/format.py _write_array_header and
 * _wrap_header): keys sorted, repr() values, spaces giving the first axis room to grow to 21
 * digits (recent numpy; older releases omit them, so their files differ from ours only in the
 * amount of padding, and only for some shapes), then 1..64 spaces so that preamble + header +
 * '\n' is a multiple of 64 (numpy pads 64 - len % 64: a full 64 when already aligned), '\n' last.
 * Version 1.0 while the length field fits uint16, else 2.0 (unreachable with RK_NPY_MAXDIM axes,
 * kept so the rule is numpy's). Returns the length, or 0 if cap is too small. */
static size_t build_preamble(const rk_array *a, unsigned char *buf, size_t cap)
{
    char shape[TUPLE_CAP], dict[TUPLE_CAP + 80];
    fmt_tuple(shape, sizeof shape, a->ndim, a->shape);
    int dn = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                      dtype_descr(a->dtype), shape);
    if (dn < 0 || (size_t)dn >= sizeof dict) return 0;
    size_t growth = 0;
    if (a->ndim > 0) {
        char d0[24];
        int n0 = snprintf(d0, sizeof d0, "%zu", a->shape[0]);
        growth = n0 < NPY_GROWTH_DIGITS ? (size_t)(NPY_GROWTH_DIGITS - n0) : 0;
    }
    size_t hlen = (size_t)dn + growth + 1, pre = 10;
    size_t pad = NPY_ALIGN - (pre + hlen) % NPY_ALIGN;
    if (hlen + pad > 65535) {
        pre = 12;
        pad = NPY_ALIGN - (pre + hlen) % NPY_ALIGN;
    }
    size_t field = hlen + pad, total = pre + field;
    if (total > cap || field > UINT32_MAX) return 0;
    memcpy(buf, NPY_MAGIC, NPY_MAGIC_LEN);
    buf[6] = pre == 10 ? 1 : 2;
    buf[7] = 0;
    for (size_t i = 0; i < pre - 8; i++) buf[8 + i] = (unsigned char)(field >> (8 * i));
    memcpy(buf + pre, dict, (size_t)dn);
    memset(buf + pre + (size_t)dn, ' ', growth + pad);
    buf[total - 1] = '\n';
    return total;
}

int rk__npy_open(rk__out *o, const char *path)
{
    int e = rk__out_open(o, path);
    if (e == ENOMEM) RK_FAIL(RK_ENOMEM, "%s: cannot allocate the temporary file name", path);
    if (e && o->direct) RK_FAIL(RK_EIO, "%s: cannot open it for writing: %s", path, strerror(e));
    if (e) RK_FAIL(RK_EIO, "%s: cannot create a temporary file beside it: %s", path, strerror(e));
    return RK_OK;
}

int rk__npy_write(rk__out *o, const char *path, const rk_array *a)
{
    size_t bytes = 0;
    int rc = check_array(path, a, &bytes);
    if (rc) { rk__out_abort(o); return rc; }
    unsigned char head[512];
    size_t hn = build_preamble(a, head, sizeof head);
    if (hn == 0) {
        rk__out_abort(o);
        RK_FAIL(RK_EOVERFLOW, "%s: .npy header does not fit %zu bytes", path, sizeof head);
    }
    if (fwrite(head, 1, hn, o->f) != hn || (bytes && fwrite(a->data, 1, bytes, o->f) != bytes)) {
        int e = errno;
        int direct = o->direct;
        rk__out_abort(o);
        RK_FAIL(RK_EIO, "%s: write failed: %s%s", path, strerror(e),
                direct ? "" : " (the target is unchanged)");
    }
    return RK_OK;
}

int rk__npy_commit(rk__out *o, const char *path)
{
    int direct = o->direct, e = rk__out_commit(o);
    if (e)
        RK_FAIL(RK_EIO, "%s: %s failed: %s%s", path, o->step, strerror(e),
                direct ? "" : " (the target is unchanged)");
    return RK_OK;
}

int rk_npy_save(const char *path, const rk_array *a)
{
    rk__clear_error();
    if (!path || !*path) RK_FAIL(RK_EINVAL, "rk_npy_save: empty path");
    if (!a) RK_FAIL(RK_EINVAL, "%s: rk_npy_save: array is NULL", path);
    size_t bytes = 0;
    int rc = check_array(path, a, &bytes);     /* before anything is created */
    if (rc) return rc;
    rk__out o;
    if ((rc = rk__npy_open(&o, path)) || (rc = rk__npy_write(&o, path, a))) return rc;
    return rk__npy_commit(&o, path);
}
