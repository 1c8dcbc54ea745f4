/* .npy reader/writer: round trips, numpy's exact bytes, format 2.0/3.0, header variants, every
 * malformed class (code + message), truncation at every length, atomic save, check_finite and
 * allocation failure. Works in a fresh mkdtemp directory removed at the end. */
#include "check.h"
#include "rk_internal.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gsl/gsl_errno.h>

static char tmpdir[64];

/* Paths in the temp dir; four rotating buffers so a few can be live at once. */
static const char *tpath(const char *name)
{
    static char bufs[4][256];
    static int k;
    char *b = bufs[k++ & 3];
    snprintf(b, sizeof bufs[0], "%s/%s", tmpdir, name);
    return b;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) fail_msg("malloc(%zu) failed", n);
    return p;
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot create %s: %s", path, strerror(errno));
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    unsigned char *p = xmalloc(cap);
    size_t got;
    while ((got = fread(p + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            unsigned char *q = realloc(p, cap *= 2);
            if (!q) fail_msg("realloc failed");
            p = q;
        }
    }
    fclose(f);
    *n = len;
    return p;
}

/* Entries of a directory other than . and .. */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) fail_msg("opendir %s: %s", dir, strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void rm_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char sub[512];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            rm_tree(sub);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* Build a .npy image: magic, version major.minor, the header-length field (2 bytes for 1.x,
 * 4 otherwise) holding hlen_field, the header bytes as given, then ndata bytes 0, 1, 2, ... */
static unsigned char *npy_raw(unsigned major, unsigned minor, size_t hlen_field,
                              const char *hdr, size_t hdr_len, size_t ndata, size_t *len)
{
    size_t pre = major == 1 ? 10 : 12;
    *len = pre + hdr_len + ndata;
    unsigned char *p = xmalloc(*len);
    memcpy(p, "\x93NUMPY", 6);
    p[6] = (unsigned char)major;
    p[7] = (unsigned char)minor;
    for (size_t i = 0; i < pre - 8; i++) p[8 + i] = (unsigned char)(hlen_field >> (8 * i));
    memcpy(p + pre, hdr, hdr_len);
    for (size_t i = 0; i < ndata; i++) p[pre + hdr_len + i] = (unsigned char)i;
    return p;
}

/* A well-formed image around the dict text: padded with spaces to a multiple of 64, '\n'. */
static unsigned char *npy_dict(unsigned major, const char *dict, size_t ndata, size_t *len)
{
    size_t pre = major == 1 ? 10 : 12, dl = strlen(dict);
    size_t hl = dl + 1;
    hl += (64 - (pre + hl) % 64) % 64;
    char *h = xmalloc(hl);
    memcpy(h, dict, dl);
    memset(h + dl, ' ', hl - dl);
    h[hl - 1] = '\n';
    unsigned char *p = npy_raw(major, 0, hl, h, hl, ndata, len);
    free(h);
    return p;
}

static void assert_zeroed(const rk_array *a)
{
    assert_null(a->data);
    assert_int_equal(a->ndim, 0);
    assert_int_equal(a->count, 0);
}

static int setup(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/rk_test_npy.XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    umask(022);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rk__alloc_fail_after(-1);
    rm_tree(tmpdir);
    return 0;
}

/* ------------------------------------------------------------------------------------ */
static void fill(rk_array *a)
{
    for (size_t i = 0; i < a->count; i++) {
        double v = 2.385 * (double)i - 17.3;
        if (i % 7 == 3) v = -0.0;
        if (i % 11 == 5) v = 1e-310;                 /* subnormal in f64, 0 in f32 */
        if (a->dtype == RK_F32) ((float *)a->data)[i] = (float)v;
        else ((double *)a->data)[i] = v;
    }
}

static void assert_same(const rk_array *a, const rk_array *b)
{
    assert_int_equal(a->dtype, b->dtype);
    assert_int_equal(a->ndim, b->ndim);
    for (int i = 0; i < a->ndim; i++) assert_int_equal(a->shape[i], b->shape[i]);
    assert_int_equal(a->count, b->count);
    size_t isz = a->dtype == RK_F32 ? 4 : 8;
    if (a->count) assert_memory_equal(a->data, b->data, a->count * isz);
    assert_non_null(b->data);
    assert_int_equal((uintptr_t)b->data % 64, 0);
}

static void test_roundtrip(void **state)
{
    (void)state;
    static const struct { int ndim; size_t shape[RK_NPY_MAXDIM]; } cases[] = {
        { 0, { 0 } }, { 1, { 7 } }, { 2, { 3, 5 } }, { 3, { 2, 3, 4 } }, { 4, { 2, 1, 3, 2 } },
        { 1, { 0 } }, { 2, { 3, 0 } }, { 3, { 2, 0, 4 } }, { 8, { 1, 2, 1, 2, 1, 3, 1, 2 } },
        { 1, { 1000003 } },
    };
    for (int dt = RK_F32; dt <= RK_F64; dt++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            rk_array a, b, m;
            assert_rk_ok(rk_array_alloc(&a, (rk_dtype)dt, cases[c].ndim, cases[c].shape));
            fill(&a);
            const char *p = tpath("rt.npy");
            assert_rk_ok(rk_npy_save(p, &a));
            assert_rk_ok(rk_npy_load(p, &b));
            assert_same(&a, &b);

            size_t n;
            unsigned char *bytes = read_bytes(p, &n);
            size_t hl = (size_t)bytes[8] | (size_t)bytes[9] << 8;
            assert_int_equal(bytes[6], 1);
            assert_int_equal((10 + hl) % 64, 0);            /* numpy's alignment */
            assert_int_equal(bytes[10 + hl - 1], '\n');
            assert_int_equal(bytes[10 + hl - 2], ' ');
            assert_int_equal(n, 10 + hl + a.count * (dt == RK_F32 ? 4 : 8));
            assert_rk_ok(rk_npy_load_mem(bytes, n, &m));
            assert_same(&a, &m);
            free(bytes);

            struct stat st;
            assert_int_equal(stat(p, &st), 0);
            assert_int_equal(st.st_mode & 0777, 0644);        /* umask 022, as fopen would */
            assert_int_equal(unlink(p), 0);
            rk_array_free(&a);
            rk_array_free(&b);
            rk_array_free(&m);
        }
    assert_int_equal(count_entries(tmpdir), 0);
}

/* np.save('x.npy', np.arange(6, dtype='<f4').reshape(2, 3)): 128-byte preamble (header length
 * 118 = 0x76), then 0.0f .. 5.0f little-endian. Identical for numpy 1.x and 2.x. */
static void test_numpy_bytes(void **state)
{
    (void)state;
    static const char dict[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    static const unsigned char data[24] = {
        0x00, 0x00, 0x00, 0x00,  0x00, 0x00, 0x80, 0x3f,  0x00, 0x00, 0x00, 0x40,
        0x00, 0x00, 0x40, 0x40,  0x00, 0x00, 0x80, 0x40,  0x00, 0x00, 0xa0, 0x40 };
    unsigned char want[152];
    memcpy(want, "\x93NUMPY\x01\x00\x76\x00", 10);
    assert_int_equal(sizeof dict - 1, 59);
    memcpy(want + 10, dict, 59);
    memset(want + 69, ' ', 58);
    want[127] = '\n';
    memcpy(want + 128, data, 24);

    rk_array a;
    assert_rk_ok(rk_npy_load_mem(want, sizeof want, &a));
    assert_int_equal(a.dtype, RK_F32);
    assert_int_equal(a.ndim, 2);
    assert_int_equal(a.shape[0], 2);
    assert_int_equal(a.shape[1], 3);
    assert_int_equal(a.count, 6);
    for (int i = 0; i < 6; i++) assert_true(((float *)a.data)[i] == (float)i);
    rk_array_free(&a);

    const char *p = tpath("arange.npy");
    write_bytes(p, want, sizeof want);
    assert_rk_ok(rk_npy_load(p, &a));
    assert_int_equal(a.count, 6);
    assert_true(((float *)a.data)[5] == 5.0f);
    rk_array_free(&a);
    assert_int_equal(unlink(p), 0);

    size_t shape[2] = { 2, 3 };
    assert_rk_ok(rk_array_alloc(&a, RK_F32, 2, shape));
    for (int i = 0; i < 6; i++) ((float *)a.data)[i] = (float)i;
    assert_rk_ok(rk_npy_save(p, &a));
    size_t n;
    unsigned char *got = read_bytes(p, &n);
    assert_int_equal(n, sizeof want);
    assert_memory_equal(got, want, sizeof want);
    free(got);
    rk_array_free(&a);

    /* np.save of np.float64(1.5): 0-d, no growth padding. */
    static const char d0[] = "{'descr': '<f8', 'fortran_order': False, 'shape': (), }";
    unsigned char w0[136];
    memcpy(w0, "\x93NUMPY\x01\x00\x76\x00", 10);
    memcpy(w0 + 10, d0, sizeof d0 - 1);
    memset(w0 + 10 + sizeof d0 - 1, ' ', 127 - 10 - (sizeof d0 - 1));
    w0[127] = '\n';
    double v = 1.5;
    memcpy(w0 + 128, &v, 8);
    assert_rk_ok(rk_array_alloc(&a, RK_F64, 0, NULL));
    *(double *)a.data = 1.5;
    assert_rk_ok(rk_npy_save(p, &a));
    got = read_bytes(p, &n);
    assert_int_equal(n, sizeof w0);
    assert_memory_equal(got, w0, sizeof w0);
    free(got);
    rk_array_free(&a);
    assert_int_equal(unlink(p), 0);
}

/* numpy pads 64 - len % 64 spaces, never 0: a header that would end exactly on a 64-byte boundary
 * gets 64 more. (0, 6789, 12345, 12345, 12345, 12345, 12345) is such a shape for '<f4':
 * 10 + 97 (dict) + 20 (growth) + 1 ('\n') = 128, so numpy writes 64 extra spaces, 192 in all. */
static void test_writer_padding(void **state)
{
    (void)state;
    static const char dict[] = "{'descr': '<f4', 'fortran_order': False, "
                               "'shape': (0, 6789, 12345, 12345, 12345, 12345, 12345), }";
    assert_int_equal(sizeof dict - 1, 97);
    unsigned char want[192];
    memcpy(want, "\x93NUMPY\x01\x00\xb6\x00", 10);
    memcpy(want + 10, dict, 97);
    memset(want + 107, ' ', 84);
    want[191] = '\n';
    rk_array a = { .dtype = RK_F32, .ndim = 7, .count = 0, .data = NULL,
                   .shape = { 0, 6789, 12345, 12345, 12345, 12345, 12345 } };
    const char *p = tpath("pad.npy");
    assert_rk_ok(rk_npy_save(p, &a));
    size_t n;
    unsigned char *b = read_bytes(p, &n);
    assert_int_equal(n, sizeof want);
    assert_memory_equal(b, want, sizeof want);
    free(b);

    /* Structure for many header lengths: aligned, 1..64 spaces after numpy's growth room. */
    for (size_t d0 = 1; d0 < 100000000000ULL; d0 = d0 * 10 + 7)
        for (int nd = 2; nd <= RK_NPY_MAXDIM; nd++) {
            size_t shape[RK_NPY_MAXDIM] = { d0, 0, 345, 6, 78, 9, 10, 1 };
            rk_array z = { .dtype = RK_F64, .ndim = nd, .count = 0, .data = NULL };
            memcpy(z.shape, shape, sizeof shape);
            assert_rk_ok(rk_npy_save(p, &z));
            b = read_bytes(p, &n);
            size_t hl = (size_t)b[8] | (size_t)b[9] << 8;
            assert_int_equal(n, 10 + hl);
            assert_int_equal(n % 64, 0);
            const unsigned char *close = memchr(b + 10, '}', hl);
            assert_non_null(close);
            size_t spaces = (size_t)(b + n - 1 - close) - 1;
            char digits[32];
            size_t growth = 21 - (size_t)snprintf(digits, sizeof digits, "%zu", d0);
            assert_true(spaces >= growth + 1 && spaces <= growth + 64);
            rk_array c;
            assert_rk_ok(rk_npy_load(p, &c));
            assert_int_equal(c.ndim, nd);
            assert_int_equal(c.shape[0], d0);
            rk_array_free(&c);
            free(b);
        }
    unlink(p);
}

static void test_versions_2_3(void **state)
{
    (void)state;
    for (unsigned major = 2; major <= 3; major++) {
        size_t n;
        unsigned char *p = npy_dict(major, "{'descr': '<f8', 'fortran_order': False, "
                                    "'shape': (3, 2), }", 48, &n);
        rk_array a;
        assert_rk_ok(rk_npy_load_mem(p, n, &a));
        assert_int_equal(a.dtype, RK_F64);
        assert_int_equal(a.ndim, 2);
        assert_int_equal(a.shape[0], 3);
        assert_int_equal(a.shape[1], 2);
        assert_memory_equal(a.data, p + n - 48, 48);
        rk_array_free(&a);
        const char *path = tpath("v23.npy");
        write_bytes(path, p, n);
        assert_rk_ok(rk_npy_load(path, &a));
        assert_int_equal(a.count, 6);
        rk_array_free(&a);
        unlink(path);
        free(p);
    }
    /* A 2.0 header longer than 65535 bytes: all four length bytes matter. */
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }";
    size_t hl = 70000 - 12, dl = strlen(dict);
    char *h = xmalloc(hl);
    memcpy(h, dict, dl);
    memset(h + dl, ' ', hl - dl);
    h[hl - 1] = '\n';
    size_t n;
    unsigned char *p = npy_raw(2, 0, hl, h, hl, 16, &n);
    rk_array a;
    assert_rk_ok(rk_npy_load_mem(p, n, &a));
    assert_int_equal(a.count, 4);
    rk_array_free(&a);
    free(p);
    free(h);
}

static void test_header_variants(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2, 3)}",
        "{'shape': (2, 3), 'descr': '<f4', 'fortran_order': False}",
        "{'fortran_order': False, 'shape': (2, 3), 'descr': '<f4', }",
        "{ 'descr' :'<f4' ,'fortran_order':False,'shape':( 2 ,3 , ) , }",
        "  {'descr':\t'<f4',\n 'fortran_order': False,\r\n 'shape': (2L, 3L)}",
        "{'descr': \"<f4\", 'fortran_order': False, 'shape': (2,3),}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        size_t n;
        unsigned char *p = npy_dict(1, ok[i], 24, &n);
        rk_array a;
        int rc = rk_npy_load_mem(p, n, &a);
        if (rc) fail_msg("variant %zu: %s: %s", i, rk_strerror(rc), rk_last_error());
        assert_int_equal(a.dtype, RK_F32);
        assert_int_equal(a.ndim, 2);
        assert_int_equal(a.shape[0], 2);
        assert_int_equal(a.shape[1], 3);
        assert_memory_equal(a.data, p + n - 24, 24);
        rk_array_free(&a);
        free(p);
    }
    /* No alignment padding at all: "}\n" right at the end. */
    const char *h = "{'descr': '<f8', 'fortran_order': False, 'shape': (1,)}\n";
    size_t n;
    unsigned char *p = npy_raw(1, 0, strlen(h), h, strlen(h), 8, &n);
    rk_array a;
    assert_rk_ok(rk_npy_load_mem(p, n, &a));
    assert_int_equal(a.count, 1);
    rk_array_free(&a);
    free(p);

    static const struct { const char *shape; int ndim; size_t count; } shapes[] = {
        { "()", 0, 1 }, { "(5,)", 1, 5 }, { "(0,)", 1, 0 }, { "(3, 0)", 2, 0 },
        { "(0, 4294967296, 4294967296)", 3, 0 },       /* empty: no overflow although huge */
        { "(1, 1, 1, 1, 1, 1, 1, 2)", 8, 2 }, { "( )", 0, 1 },
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        char dict[128];
        snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }",
                 shapes[i].shape);
        p = npy_dict(1, dict, shapes[i].count * 4, &n);
        int rc = rk_npy_load_mem(p, n, &a);
        if (rc) fail_msg("shape %s: %s: %s", shapes[i].shape, rk_strerror(rc), rk_last_error());
        assert_int_equal(a.ndim, shapes[i].ndim);
        assert_int_equal(a.count, shapes[i].count);
        rk_array_free(&a);
        free(p);
    }
}

/* Each bad header: load_mem and load fail with the code, a message (naming the path for load),
 * and a zeroed output. */
static void expect_fail(const unsigned char *p, size_t n, int code, const char *what)
{
    rk_array a = { .ndim = 3, .count = 7 };
    int rc = rk_npy_load_mem(p, n, &a);
    if (rc != code) fail_msg("%s: load_mem returned %s, expected %s: %s", what, rk_strerror(rc),
                             rk_strerror(code), rk_last_error());
    assert_true(rk_last_error()[0] != '\0');
    assert_zeroed(&a);
    const char *path = tpath("bad.npy");
    write_bytes(path, p, n);
    rc = rk_npy_load(path, &a);
    if (rc != code) fail_msg("%s: load returned %s, expected %s: %s", what, rk_strerror(rc),
                             rk_strerror(code), rk_last_error());
    assert_non_null(strstr(rk_last_error(), path));
    assert_zeroed(&a);
    unlink(path);
}

#define F4_23 "'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)"

static void test_malformed_headers(void **state)
{
    (void)state;
    static const struct { const char *dict; size_t ndata; int code; } bad[] = {
        /* syntax, keys */
        { "", 24, RK_EFORMAT },
        { "'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)", 24, RK_EFORMAT },
        { "{" F4_23 ", ", 24, RK_EFORMAT },
        { "{" F4_23 "} x", 24, RK_EFORMAT },
        { "{" F4_23 "}}", 24, RK_EFORMAT },
        { "{}", 24, RK_EFORMAT },
        { "{,}", 24, RK_EFORMAT },
        { "{'fortran_order': False, 'shape': (2, 3)}", 24, RK_EFORMAT },
        { "{'descr': '<f4', 'shape': (2, 3)}", 24, RK_EFORMAT },
        { "{'descr': '<f4', 'fortran_order': False}", 24, RK_EFORMAT },
        { "{" F4_23 ", 'descr': '<f4'}", 24, RK_EFORMAT },
        { "{" F4_23 ", 'shape': (2, 3)}", 24, RK_EFORMAT },
        { "{" F4_23 ", 'extra': 1}", 24, RK_EFORMAT },
        { "{descr: '<f4', 'fortran_order': False, 'shape': (2, 3)}", 24, RK_EFORMAT },
        { "{'descr' '<f4', 'fortran_order': False, 'shape': (2, 3)}", 24, RK_EFORMAT },
        { "{'descr': '<f4' 'fortran_order': False, 'shape': (2, 3)}", 24, RK_EFORMAT },
        { "{'descr': '<f4', 'fortran_order': False,, 'shape': (2, 3)}", 24, RK_EFORMAT },
        { "{'descr\": '<f4', 'fortran_order': False, 'shape': (2, 3)}", 24, RK_EFORMAT },
        { "{'descr': '<f4, 'fortran_order': False, 'shape': (2, 3)}", 24, RK_EFORMAT },
        { "{'descr': 4, 'fortran_order': False, 'shape': (2, 3)}", 24, RK_EFORMAT },
        { "{'descr': b'<f4', 'fortran_order': False, 'shape': (2, 3)}", 24, RK_EFORMAT },
        { "{'descr': [('a', '<f4'), 'fortran_order': False, 'shape': (2,)}", 8, RK_EFORMAT },
        { "{'descr': '<f4', 'fortran_order': 'False', 'shape': (2, 3)}", 24, RK_EFORMAT },
        { "{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3)}", 24, RK_EFORMAT },
        { "{'descr': '<f4', 'fortran_order': Falsey, 'shape': (2, 3)}", 24, RK_EFORMAT },
        { "{'descr': '<f4', 'fortran_order': false, 'shape': (2, 3)}", 24, RK_EFORMAT },
        /* shape */
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (6)}", 24, RK_EFORMAT },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3]}", 24, RK_EFORMAT },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3}", 24, RK_EFORMAT },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}", 24, RK_EFORMAT },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (06,)}", 24, RK_EFORMAT },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (6.0,)}", 24, RK_EFORMAT },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2,, 3)}", 24, RK_EFORMAT },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (,)}", 24, RK_EFORMAT },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2 3)}", 24, RK_EFORMAT },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (0x6,)}", 24, RK_EFORMAT },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (6_0,)}", 240, RK_EFORMAT },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': 6}", 24, RK_EFORMAT },
        /* dtypes and layouts we do not read */
        { "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3)}", 24, RK_EUNSUP },
        { "{'descr': '>f8', 'fortran_order': False, 'shape': (2, 3)}", 48, RK_EUNSUP },
        { "{'descr': '=f4', 'fortran_order': False, 'shape': (2, 3)}", 24, RK_EUNSUP },
        { "{'descr': '<f2', 'fortran_order': False, 'shape': (2, 3)}", 12, RK_EUNSUP },
        { "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3)}", 24, RK_EUNSUP },
        { "{'descr': '|b1', 'fortran_order': False, 'shape': (2, 3)}", 6, RK_EUNSUP },
        { "{'descr': '<c8', 'fortran_order': False, 'shape': (2, 3)}", 48, RK_EUNSUP },
        { "{'descr': '|O', 'fortran_order': False, 'shape': (2, 3)}", 48, RK_EUNSUP },
        { "{'descr': 'O', 'fortran_order': False, 'shape': (2, 3)}", 48, RK_EUNSUP },
        { "{'descr': '', 'fortran_order': False, 'shape': (2, 3)}", 24, RK_EUNSUP },
        { "{'descr': '<f\\x34', 'fortran_order': False, 'shape': (2, 3)}", 24, RK_EUNSUP },
        { "{'descr': [('a', '<f4'), ('b', '<i4', (2,))], 'fortran_order': False, "
          "'shape': (2,)}", 24, RK_EUNSUP },
        { "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3)}", 24, RK_EUNSUP },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 1, 6)}", 24,
          RK_EUNSUP },
        /* sizes */
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,)}", 24,
          RK_EOVERFLOW },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 99999999999999999999999)}", 0,
          RK_EOVERFLOW },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296)}", 24,
          RK_EOVERFLOW },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904,)}", 24,
          RK_EOVERFLOW },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2305843009213693952,)}", 24,
          RK_EOVERFLOW },
        { "{'descr': '<f8', 'fortran_order': False, 'shape': (1152921504606846976,)}", 24,
          RK_EOVERFLOW },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000000000,)}", 24,
          RK_EFORMAT },
        { "{" F4_23 "}", 23, RK_EFORMAT },
        { "{" F4_23 "}", 25, RK_EFORMAT },
        { "{" F4_23 "}", 0, RK_EFORMAT },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': ()}", 0, RK_EFORMAT },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (0,)}", 1, RK_EFORMAT },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n;
        unsigned char *p = npy_dict(1, bad[i].dict, bad[i].ndata, &n);
        char what[64];
        snprintf(what, sizeof what, "case %zu", i);
        expect_fail(p, n, bad[i].code, what);
        /* Nothing is allocated before the header and the data size have been checked. */
        rk__alloc_fail_after(0);
        rk_array a;
        assert_rk_error(rk_npy_load_mem(p, n, &a), bad[i].code);
        rk__alloc_fail_after(-1);
        free(p);
    }
    /* Messages say what is wrong. */
    size_t n;
    unsigned char *p = npy_dict(1, "{" F4_23 "}", 20, &n);
    rk_array a;
    assert_rk_error(rk_npy_load_mem(p, n, &a), RK_EFORMAT);
    assert_non_null(strstr(rk_last_error(), "truncated: header says 24 bytes of data, file has 20"));
    free(p);
    p = npy_dict(1, "{'descr': '>f8', 'fortran_order': False, 'shape': (3,)}", 24, &n);
    assert_rk_error(rk_npy_load_mem(p, n, &a), RK_EUNSUP);
    assert_non_null(strstr(rk_last_error(), "big-endian"));
    free(p);
    p = npy_dict(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (3,)}", 12, &n);
    assert_rk_error(rk_npy_load_mem(p, n, &a), RK_EUNSUP);
    assert_non_null(strstr(rk_last_error(), "'<i4'"));
    free(p);
    p = npy_dict(1, "{" F4_23 ", 'shape': (2, 3)}", 24, &n);
    assert_rk_error(rk_npy_load_mem(p, n, &a), RK_EFORMAT);
    assert_non_null(strstr(rk_last_error(), "duplicate key 'shape'"));
    free(p);
}

static void test_malformed_preamble(void **state)
{
    (void)state;
    static const char good[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}    \n";
    size_t gl = sizeof good - 1, n;
    unsigned char *p;
    struct { unsigned major, minor; size_t field; int code; } v[] = {
        { 4, 0, gl, RK_EUNSUP }, { 1, 1, gl, RK_EUNSUP }, { 0, 0, gl, RK_EUNSUP },
        { 2, 1, gl, RK_EUNSUP },
        { 1, 0, 0, RK_EFORMAT },                      /* empty header                 */
        { 1, 0, gl + 9, RK_EFORMAT },                 /* runs past the end (8 data)   */
        { 1, 0, 65535, RK_EFORMAT },
        { 2, 0, (size_t)1 << 21, RK_EFORMAT },        /* absurd                        */
        { 3, 0, 0xffffffffu, RK_EFORMAT },
        { 1, 0, gl - 1, RK_EFORMAT },                 /* header ends before '\n'       */
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        p = npy_raw(v[i].major, v[i].minor, v[i].field, good, gl, 8, &n);
        char what[32];
        snprintf(what, sizeof what, "preamble %zu", i);
        expect_fail(p, n, v[i].code, what);
        free(p);
    }
    /* Bad magic; a zip (.npz) file; not ending in '\n'; NUL padding. */
    p = npy_raw(1, 0, gl, good, gl, 8, &n);
    p[5] = 'Z';
    expect_fail(p, n, RK_EFORMAT, "magic");
    memcpy(p, "PK\x03\x04", 4);
    expect_fail(p, n, RK_EFORMAT, "zip");
    free(p);
    char h[sizeof good];
    memcpy(h, good, sizeof good);
    h[gl - 1] = ' ';
    p = npy_raw(1, 0, gl, h, gl, 8, &n);
    expect_fail(p, n, RK_EFORMAT, "no newline");
    free(p);
    h[gl - 1] = '\n';
    h[gl - 2] = '\0';
    p = npy_raw(1, 0, gl, h, gl, 8, &n);
    expect_fail(p, n, RK_EFORMAT, "NUL padding");
    free(p);
    h[gl - 2] = ' ';
    h[gl - 3] = '\n';
    p = npy_raw(1, 0, gl, h, gl, 8, &n);
    expect_fail(p, n, RK_EFORMAT, "two newlines");
    free(p);

    rk_array a;
    assert_rk_error(rk_npy_load_mem(NULL, 0, &a), RK_EFORMAT);
    assert_rk_error(rk_npy_load_mem(NULL, 10, &a), RK_EINVAL);
    assert_rk_error(rk_npy_load_mem("x", 1, NULL), RK_EINVAL);
    assert_rk_error(rk_npy_load(NULL, &a), RK_EINVAL);
}

/* Every proper prefix of a valid file fails cleanly; the whole file loads. */
static void test_every_truncation(void **state)
{
    (void)state;
    size_t shape[3] = { 2, 3, 1 };
    rk_array a;
    assert_rk_ok(rk_array_alloc(&a, RK_F64, 3, shape));
    fill(&a);
    const char *path = tpath("full.npy"), *cut = tpath("cut.npy");
    assert_rk_ok(rk_npy_save(path, &a));
    size_t n2;
    unsigned char *v2 = npy_dict(2, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}",
                                 12, &n2);
    size_t n;
    unsigned char *full = read_bytes(path, &n);
    for (int which = 0; which < 2; which++) {
        const unsigned char *img = which ? v2 : full;
        size_t len = which ? n2 : n;
        for (size_t k = 0; k <= len; k++) {
            rk_array b = { .count = 1 };
            int rc = rk_npy_load_mem(img, k, &b);
            if (k == len) {
                if (rc) fail_msg("full image: %s", rk_last_error());
                rk_array_free(&b);
                continue;
            }
            if (rc != RK_EFORMAT)
                fail_msg("prefix %zu of %zu: %s: %s", k, len, rk_strerror(rc), rk_last_error());
            assert_true(rk_last_error()[0] != '\0');
            assert_zeroed(&b);
            write_bytes(cut, img, k);
            assert_rk_error(rk_npy_load(cut, &b), RK_EFORMAT);
            assert_non_null(strstr(rk_last_error(), cut));
            assert_zeroed(&b);
        }
    }
    /* And one byte too many. */
    unsigned char *more = xmalloc(n + 1);
    memcpy(more, full, n);
    more[n] = 0;
    rk_array b;
    assert_rk_error(rk_npy_load_mem(more, n + 1, &b), RK_EFORMAT);
    assert_non_null(strstr(rk_last_error(), "trailing"));
    free(more);
    free(full);
    free(v2);
    rk_array_free(&a);
    unlink(path);
    unlink(cut);
}

static void test_load_files(void **state)
{
    (void)state;
    rk_array a;
    const char *missing = tpath("no-such.npy");
    assert_rk_error(rk_npy_load(missing, &a), RK_EIO);
    assert_non_null(strstr(rk_last_error(), missing));
    assert_non_null(strstr(rk_last_error(), strerror(ENOENT)));
    assert_zeroed(&a);

    const char *dir = tpath("adir");
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_rk_error(rk_npy_load(dir, &a), RK_EIO);
    assert_non_null(strstr(rk_last_error(), "directory"));
    assert_int_equal(rmdir(dir), 0);

    const char *fifo = tpath("fifo");
    assert_int_equal(mkfifo(fifo, 0644), 0);
    assert_rk_error(rk_npy_load(fifo, &a), RK_EIO);          /* returns, does not block */
    assert_non_null(strstr(rk_last_error(), "FIFO"));
    assert_int_equal(unlink(fifo), 0);

    const char *empty = tpath("empty.npy");
    write_bytes(empty, "", 0);
    assert_rk_error(rk_npy_load(empty, &a), RK_EFORMAT);
    assert_int_equal(unlink(empty), 0);

    assert_rk_error(rk_npy_load("/dev/null", &a), RK_EIO);
}

/* ------------------------------------------------------------------------------------ */
static void small(rk_array *a, double v)
{
    size_t shape[1] = { 3 };
    assert_rk_ok(rk_array_alloc(a, RK_F64, 1, shape));
    for (int i = 0; i < 3; i++) ((double *)a->data)[i] = v + i;
}

static void test_save_atomic(void **state)
{
    (void)state;
    rk_array a, b;
    small(&a, 2.385);
    int before = count_entries(tmpdir);

    /* Into a directory that does not exist: RK_EIO, nothing created. */
    const char *nodir = tpath("nodir"), *in_nodir = tpath("nodir/x.npy");
    assert_rk_error(rk_npy_save(in_nodir, &a), RK_EIO);
    assert_non_null(strstr(rk_last_error(), in_nodir));
    struct stat st;
    assert_int_equal(stat(nodir, &st), -1);
    assert_int_equal(count_entries(tmpdir), before);

    /* A failing write over an existing file keeps the old bytes and leaves no temp file. */
    const char *old = tpath("old.npy");
    assert_rk_ok(rk_npy_save(old, &a));
    size_t n0, n1;
    unsigned char *b0 = read_bytes(old, &n0);
    before = count_entries(tmpdir);
    size_t big_shape[2] = { 64, 512 };
    rk_array big;
    assert_rk_ok(rk_array_alloc(&big, RK_F64, 2, big_shape));     /* 256 KiB */
    struct rlimit saved, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = saved;
    lim.rlim_cur = 4096;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = rk_npy_save(old, &big);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, oldsig);
    if (rc != RK_EIO) fail_msg("save under RLIMIT_FSIZE: %s: %s", rk_strerror(rc), rk_last_error());
    assert_non_null(strstr(rk_last_error(), old));
    unsigned char *b1 = read_bytes(old, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(b0, b1, n0);
    free(b1);
    assert_int_equal(count_entries(tmpdir), before);

    /* Renaming onto a directory fails: the directory stays, no temp file is left. */
    const char *isdir = tpath("isdir");
    assert_int_equal(mkdir(isdir, 0755), 0);
    before = count_entries(tmpdir);
    assert_rk_error(rk_npy_save(isdir, &a), RK_EIO);
    assert_int_equal(stat(isdir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(count_entries(isdir), 0);
    assert_int_equal(count_entries(tmpdir), before);
    assert_int_equal(rmdir(isdir), 0);
    before = count_entries(tmpdir);
    assert_int_equal(before, 1);                            /* old.npy alone */

    /* Invalid arrays: refused before anything is touched. */
    rk_array bad = a;
    bad.dtype = (rk_dtype)0;
    assert_rk_error(rk_npy_save(old, &bad), RK_EINVAL);
    bad = a; bad.dtype = (rk_dtype)3;
    assert_rk_error(rk_npy_save(old, &bad), RK_EINVAL);
    bad = a; bad.ndim = RK_NPY_MAXDIM + 1;
    assert_rk_error(rk_npy_save(old, &bad), RK_EINVAL);
    bad = a; bad.ndim = -1;
    assert_rk_error(rk_npy_save(old, &bad), RK_EINVAL);
    bad = a; bad.count = 4;
    assert_rk_error(rk_npy_save(old, &bad), RK_EDIM);
    bad = a; bad.data = NULL;
    assert_rk_error(rk_npy_save(old, &bad), RK_EINVAL);
    bad = a; bad.ndim = 3; bad.shape[0] = bad.shape[1] = (size_t)1 << 32; bad.shape[2] = 2;
    assert_rk_error(rk_npy_save(old, &bad), RK_EOVERFLOW);
    bad = a; bad.shape[0] = (size_t)1 << 61; bad.count = bad.shape[0];
    assert_rk_error(rk_npy_save(old, &bad), RK_EOVERFLOW);
    assert_rk_error(rk_npy_save("", &a), RK_EINVAL);
    assert_rk_error(rk_npy_save(NULL, &a), RK_EINVAL);
    assert_rk_error(rk_npy_save(old, NULL), RK_EINVAL);
    b1 = read_bytes(old, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(b0, b1, n0);
    free(b1);
    free(b0);
    assert_int_equal(count_entries(tmpdir), before);

    /* A successful save replaces the file and keeps its mode. */
    assert_int_equal(chmod(old, 0640), 0);
    small(&b, -7.25);
    assert_rk_ok(rk_npy_save(old, &b));
    assert_int_equal(stat(old, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
    rk_array c;
    assert_rk_ok(rk_npy_load(old, &c));
    assert_same(&b, &c);
    assert_int_equal(count_entries(tmpdir), before);

    rk_array_free(&c);
    rk_array_free(&b);
    rk_array_free(&big);
    rk_array_free(&a);
    unlink(old);
}

/* ------------------------------------------------------------------------------------ */
static void test_check_finite(void **state)
{
    (void)state;
    size_t s2[2] = { 4, 7 }, s3[3] = { 2, 3, 4 }, s1[1] = { 5 };
    rk_array a;
    assert_rk_ok(rk_array_alloc(&a, RK_F32, 2, s2));
    fill(&a);
    assert_rk_ok(rk_array_check_finite(&a, "q.npy"));
    assert_string_equal(rk_last_error(), "");
    ((float *)a.data)[2 * 7 + 5] = NAN;
    ((float *)a.data)[3 * 7 + 1] = INFINITY;
    assert_rk_error(rk_array_check_finite(&a, "q.npy"), RK_ENONFINITE);
    assert_string_equal(rk_last_error(), "q.npy: element (2, 5) is NaN");
    rk_array_free(&a);

    assert_rk_ok(rk_array_alloc(&a, RK_F64, 3, s3));
    fill(&a);
    ((double *)a.data)[1 * 12 + 1 * 4 + 3] = INFINITY;
    ((double *)a.data)[23] = NAN;
    assert_rk_error(rk_array_check_finite(&a, "k"), RK_ENONFINITE);
    assert_string_equal(rk_last_error(), "k: element (1, 1, 3) is +Inf");
    rk_array_free(&a);

    assert_rk_ok(rk_array_alloc(&a, RK_F64, 1, s1));
    ((double *)a.data)[0] = -INFINITY;
    assert_rk_error(rk_array_check_finite(&a, NULL), RK_ENONFINITE);
    assert_string_equal(rk_last_error(), "array: element (0,) is -Inf");
    rk_array_free(&a);

    assert_rk_ok(rk_array_alloc(&a, RK_F32, 0, NULL));
    ((float *)a.data)[0] = -NAN;
    assert_rk_error(rk_array_check_finite(&a, "s"), RK_ENONFINITE);
    assert_string_equal(rk_last_error(), "s: element () is NaN");
    rk_array_free(&a);

    size_t s0[2] = { 3, 0 };
    assert_rk_ok(rk_array_alloc(&a, RK_F32, 2, s0));
    assert_rk_ok(rk_array_check_finite(&a, "empty"));
    rk_array_free(&a);

    rk_array z = { 0 };
    assert_rk_error(rk_array_check_finite(&z, "z"), RK_EINVAL);          /* dtype 0 */
    z.dtype = RK_F32; z.ndim = 1; z.shape[0] = 2; z.count = 2;
    assert_rk_error(rk_array_check_finite(&z, "z"), RK_EINVAL);          /* NULL data */
    assert_rk_error(rk_array_check_finite(NULL, "z"), RK_EINVAL);
}

static void test_array_alloc(void **state)
{
    (void)state;
    rk_array a;
    size_t s[3] = { 3, 4, 5 };
    assert_rk_ok(rk_array_alloc(&a, RK_F64, 3, s));
    assert_int_equal(a.count, 60);
    assert_int_equal((uintptr_t)a.data % 64, 0);
    for (size_t i = 0; i < 60; i++) assert_true(((double *)a.data)[i] == 0.0);
    rk_array_free(&a);
    assert_zeroed(&a);
    rk_array_free(&a);                                    /* twice: still fine */
    rk_array_free(NULL);
    rk_array z = { 0 };
    rk_array_free(&z);

    assert_rk_ok(rk_array_alloc(&a, RK_F32, 0, NULL));
    assert_int_equal(a.count, 1);
    rk_array_free(&a);

    size_t over[2] = { SIZE_MAX, 2 }, over_b[1] = { SIZE_MAX / 4 }, zero[3] = { SIZE_MAX, 0, 3 };
    assert_rk_error(rk_array_alloc(&a, RK_F32, 2, over), RK_EOVERFLOW);
    assert_zeroed(&a);
    assert_rk_error(rk_array_alloc(&a, RK_F64, 1, over_b), RK_EOVERFLOW);
    assert_rk_ok(rk_array_alloc(&a, RK_F64, 3, zero));
    assert_int_equal(a.count, 0);
    rk_array_free(&a);
    assert_rk_error(rk_array_alloc(&a, (rk_dtype)0, 1, s), RK_EINVAL);
    assert_rk_error(rk_array_alloc(&a, (rk_dtype)3, 1, s), RK_EINVAL);
    assert_rk_error(rk_array_alloc(&a, RK_F32, RK_NPY_MAXDIM + 1, s), RK_EINVAL);
    assert_rk_error(rk_array_alloc(&a, RK_F32, -1, s), RK_EINVAL);
    assert_rk_error(rk_array_alloc(&a, RK_F32, 2, NULL), RK_EINVAL);
    assert_rk_error(rk_array_alloc(NULL, RK_F32, 1, s), RK_EINVAL);
    assert_zeroed(&a);
}

/* Fail the k-th allocation for k = 0, 1, ... until the call succeeds: each failure is RK_ENOMEM
 * with nothing leaked (LSan) and nothing left behind. */
static void test_alloc_failure(void **state)
{
    (void)state;
    rk_array a, b;
    small(&a, 1.5);
    const char *p = tpath("nomem.npy");
    assert_rk_ok(rk_npy_save(p, &a));
    size_t n0;
    unsigned char *img = read_bytes(p, &n0);
    int before = count_entries(tmpdir), fails;

    for (int which = 0; which < 4; which++) {
        fails = 0;
        for (long k = 0;; k++) {
            rk__alloc_fail_after(k);
            size_t shape[2] = { 2, 3 };
            int rc = which == 0 ? rk_npy_load(p, &b)
                   : which == 1 ? rk_npy_load_mem(img, n0, &b)
                   : which == 2 ? rk_npy_save(p, &a)
                   : rk_array_alloc(&b, RK_F32, 2, shape);
            rk__alloc_fail_after(-1);
            if (rc == RK_OK) break;
            if (rc != RK_ENOMEM) fail_msg("case %d, k %ld: %s: %s", which, k, rk_strerror(rc),
                                          rk_last_error());
            assert_true(rk_last_error()[0] != '\0');
            if (which == 0 || which == 2) assert_non_null(strstr(rk_last_error(), p));
            if (which != 2) assert_zeroed(&b);
            fails++;
            assert_true(k < 10);
        }
        assert_true(fails >= 1);
        if (which != 2) rk_array_free(&b);
        size_t n1;
        unsigned char *now = read_bytes(p, &n1);
        assert_int_equal(n1, n0);
        assert_memory_equal(now, img, n0);
        free(now);
        assert_int_equal(count_entries(tmpdir), before);
    }
    free(img);
    rk_array_free(&a);
    unlink(p);
}

/* tests/data/npy: a seed corpus for fuzzing. The file name says what loading must return:
 * ok_*, eformat_*, eunsup_*, eoverflow_*. */
static void test_seed_corpus(void **state)
{
    (void)state;
    char dir[512];
    const char *file = __FILE__, *slash = strrchr(file, '/');
    snprintf(dir, sizeof dir, "%.*sdata/npy", slash ? (int)(slash - file + 1) : 0, file);
    DIR *d = opendir(dir);
    if (!d) { print_message("no corpus at %s (run from the repo root)\n", dir); skip(); }
    static const struct { const char *prefix; int code; } kinds[] = {
        { "ok_", RK_OK }, { "eformat_", RK_EFORMAT }, { "eunsup_", RK_EUNSUP },
        { "eoverflow_", RK_EOVERFLOW },
    };
    int seen = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 4, ".npy")) continue;
        int code = -1;
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
            if (!strncmp(e->d_name, kinds[k].prefix, strlen(kinds[k].prefix))) code = kinds[k].code;
        if (code < 0) fail_msg("corpus file %s has no known prefix", e->d_name);
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        rk_array a;
        int rc = rk_npy_load(path, &a);
        if (rc != code) fail_msg("%s: got %s, expected %s: %s", path, rk_strerror(rc),
                                 rk_strerror(code), rk_last_error());
        if (rc == RK_OK) {
            size_t n;
            unsigned char *img = read_bytes(path, &n);
            rk_array m;
            assert_rk_ok(rk_npy_load_mem(img, n, &m));
            assert_same(&a, &m);
            rk_array_free(&m);
            free(img);
        } else {
            assert_true(rk_last_error()[0] != '\0');
        }
        rk_array_free(&a);
        seen++;
    }
    closedir(d);
    assert_true(seen >= 10);
}

int main(void)
{
    gsl_set_error_handler_off();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_numpy_bytes),
        cmocka_unit_test(test_writer_padding),
        cmocka_unit_test(test_versions_2_3),
        cmocka_unit_test(test_header_variants),
        cmocka_unit_test(test_malformed_headers),
        cmocka_unit_test(test_malformed_preamble),
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_load_files),
        cmocka_unit_test(test_save_atomic),
        cmocka_unit_test(test_check_finite),
        cmocka_unit_test(test_array_alloc),
        cmocka_unit_test(test_alloc_failure),
        cmocka_unit_test(test_seed_corpus),
    };
    return cmocka_run_group_tests_name("npy", tests, setup, teardown);
}
