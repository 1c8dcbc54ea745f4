/* The bad-input table (docs/bad-input.md): every class of bad input a user can give the `ropekit`
 * binary, one cmocka test per row. Each row runs the real binary (tests/run_cli.c) in a directory
 * of small input files and asserts: exit status 2, nothing on stdout, exactly one stderr line
 * "ropekit <cmd>: ..." holding the row's key words, and the directory byte for byte as before
 * (no output, no temporary file, no input changed).
 *
 * RK_BADINPUT_DOC=FILE writes the markdown table of docs/bad-input.md from the run: the messages
 * in it are the ones the binary printed (the directory's path cut out of them), so the document
 * can be regenerated whenever a message changes:
 *   RK_BADINPUT_DOC=docs/bad-input.md build/tests/test_badinput */
#include "check.h"
#include "run_cli.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef RK_TESTS_DIR
#error "RK_TESTS_DIR must name the tests directory (the Makefile defines it)"
#endif

static char dir[512];   /* the inputs; every command runs with it as working directory */

/* ---- fixtures ----------------------------------------------------------------------------- */
static void save_array(const char *name, rk_dtype dt, int ndim, const size_t *shape,
                       size_t bad_at, double bad)
{
    rk_array a;
    if (rk_array_alloc(&a, dt, ndim, shape)) fail_msg("rk_array_alloc: %s", rk_last_error());
    for (size_t i = 0; i < a.count; i++) {
        double x = i == bad_at ? bad : sin(0.7 * (double)i + 0.3);
        if (dt == RK_F32) ((float *)a.data)[i] = (float)x;
        else ((double *)a.data)[i] = x;
    }
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (rk_npy_save(path, &a)) fail_msg("rk_npy_save %s: %s", path, rk_last_error());
    rk_array_free(&a);
}
#define NOBAD ((size_t)-1)
#define ARR(name, dt, bad_at, bad, ...)                                                     \
    save_array(name, dt, (int)(sizeof((size_t[]){ __VA_ARGS__ }) / sizeof(size_t)),         \
               (size_t[]){ __VA_ARGS__ }, bad_at, bad)

static void copy_corpus(const char *from, const char *to)
{
    char src[600], dst[600], buf[4096];
    snprintf(src, sizeof src, "%s/data/npy/%s", RK_TESTS_DIR, from);
    snprintf(dst, sizeof dst, "%s/%s", dir, to);
    FILE *i = fopen(src, "rb"), *o = fopen(dst, "wb");
    if (!i || !o) fail_msg("cannot copy %s to %s: %s", src, dst, strerror(errno));
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, i)) > 0) assert_int_equal(fwrite(buf, 1, n, o), n);
    fclose(i);
    assert_int_equal(fclose(o), 0);
}

static void write_text(const char *name, const char *text)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot create %s: %s", path, strerror(errno));
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void make_fixtures(void)
{
    ARR("x.npy", RK_F32, NOBAD, 0, 4, 8);
    ARR("odd.npy", RK_F32, NOBAD, 0, 4, 7);
    ARR("vec.npy", RK_F32, NOBAD, 0, 8);
    ARR("d0.npy", RK_F32, NOBAD, 0, 4, 0);
    ARR("n0.npy", RK_F32, NOBAD, 0, 0, 8);
    ARR("q.npy", RK_F32, NOBAD, 0, 4, 8);
    ARR("k.npy", RK_F32, NOBAD, 0, 4, 8);
    ARR("v.npy", RK_F32, NOBAD, 0, 4, 8);
    ARR("k7.npy", RK_F32, NOBAD, 0, 5, 7);
    ARR("v5.npy", RK_F32, NOBAD, 0, 5, 8);
    ARR("q3.npy", RK_F32, NOBAD, 0, 2, 4, 8);
    ARR("kd.npy", RK_F64, NOBAD, 0, 4, 8);
    ARR("w6.npy", RK_F32, NOBAD, 0, 5, 6);
    ARR("nan.npy", RK_F32, 13, NAN, 4, 8);
    ARR("vinf.npy", RK_F32, 9, -INFINITY, 4, 8);
    ARR("qd.npy", RK_F64, NOBAD, 0, 4, 8);
    ARR("kbig.npy", RK_F64, 0, 1e300, 4, 8);
    copy_corpus("eunsup_int32.npy", "int32.npy");
    copy_corpus("eunsup_half.npy", "half.npy");
    copy_corpus("eunsup_big_endian_f8.npy", "big_endian.npy");
    copy_corpus("eunsup_fortran_order.npy", "fortran.npy");
    copy_corpus("eformat_truncated_header.npy", "cut_header.npy");
    copy_corpus("eformat_truncated_data.npy", "cut_data.npy");
    copy_corpus("eformat_trailing_byte.npy", "trailing.npy");
    copy_corpus("eformat_unknown_key.npy", "bad_header.npy");
    copy_corpus("eformat_npz_zip.npy", "archive.npz");
    copy_corpus("eformat_empty.npy", "empty.npy");
    copy_corpus("eunsup_9_axes.npy", "axes9.npy");
    copy_corpus("eformat_huge_count.npy", "huge.npy");
    copy_corpus("eoverflow_count.npy", "count_overflow.npy");
    copy_corpus("eoverflow_bytes.npy", "bytes_overflow.npy");
    copy_corpus("eoverflow_axis.npy", "axis_overflow.npy");
    write_text("notes.txt", "this is not numpy\n");
    write_text("table.tsv", "variant\tn\tseconds\nsoftmax\t64\t0.1\n");
    char p[600];
    snprintf(p, sizeof p, "%s/sub", dir);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/fifo", dir);
    assert_int_equal(mkfifo(p, 0644), 0);
    snprintf(p, sizeof p, "%s/secret.npy", dir);
    ARR("secret.npy", RK_F32, NOBAD, 0, 4, 8);
    assert_int_equal(chmod(p, 0), 0);
}

/* ---- the directory as it was: names and contents --------------------------------------------- */
typedef struct { char name[256]; size_t size; unsigned long long hash; } entry;
typedef struct { entry e[96]; size_t n; } listing;

static unsigned long long fnv(const char *path)
{
    unsigned long long h = 1469598103934665603ULL;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;   /* the FIFO is never opened (it would block); unreadable files: 0 */
    int c;
    while ((c = getc(f)) != EOF) h = (h ^ (unsigned)c) * 1099511628211ULL;
    fclose(f);
    return h;
}

static void list_dir(listing *l)
{
    DIR *d = opendir(dir);
    if (!d) fail_msg("opendir %s: %s", dir, strerror(errno));
    l->n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (l->n == sizeof l->e / sizeof l->e[0]) fail_msg("too many files in %s", dir);
        entry *x = &l->e[l->n++];
        snprintf(x->name, sizeof x->name, "%s", e->d_name);
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) != 0) fail_msg("lstat %s: %s", p, strerror(errno));
        x->size = S_ISREG(st.st_mode) ? (size_t)st.st_size : 0;
        x->hash = S_ISREG(st.st_mode) ? fnv(p) : (unsigned long long)st.st_mode;
    }
    closedir(d);
}

static void assert_same_listing(const listing *a, const listing *b)
{
    for (size_t i = 0; i < b->n; i++) {
        size_t j = 0;
        while (j < a->n && strcmp(a->e[j].name, b->e[i].name)) j++;
        if (j == a->n) fail_msg("the failed run left a new file '%s'", b->e[i].name);
        if (a->e[j].size != b->e[i].size || a->e[j].hash != b->e[i].hash)
            fail_msg("the failed run changed '%s'", b->e[i].name);
    }
    if (a->n != b->n) fail_msg("%zu files before the run, %zu after", a->n, b->n);
}

/* ---- the table --------------------------------------------------------------------------------- */
typedef struct {
    const char *name;                 /* test name                                            */
    const char *klass;                /* input class (first column of the document)           */
    const char *args[32];             /* after "ropekit"; run in `dir`                        */
    const char *keys[6];              /* words the message must contain                       */
    void (*prepare)(void);            /* extra setup before the run (NULL: none)              */
    int how;                          /* RUN_PLAIN, RUN_NOBODY, RUN_LOWMEM                    */
} row;
enum {
    RUN_PLAIN,
    RUN_NOBODY,   /* as nobody when the suite runs as root (file permissions do not apply to root) */
    RUN_LOWMEM,   /* with 1 GB of address space (RLIMIT_AS); under AddressSanitizer, which needs
                     terabytes of address space, with allocations above 1 GB failing instead    */
};

#if defined(__SANITIZE_ADDRESS__)
#  define RK_ASAN 1
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer)
#    define RK_ASAN 1
#  endif
#endif

/* a table written by an earlier run, for --resume with other settings */
static void make_approx_table(void)
{
    static const char *const args[] = { "approx", "--variants", "performer", "--kernels",
        "positive", "--projs", "iid", "--m-min", "8", "--m-max", "16", "--norms", "1", "--n",
        "8", "--d", "4", "--seeds", "2", "--out", "a.tsv", NULL };
    run_cli_result r;
    if (run_cli(args, dir, 120, &r) != 0) fail_msg("approx: exit %d: %s", r.code, r.err);
}

#define A(...) { __VA_ARGS__, NULL }
#define K(...) { __VA_ARGS__, NULL }
static const row rows[] = {
    /* files */
    { "missing_file", "missing file", A("rope", "--in", "missing.npy", "--out", "y.npy"),
      K("ropekit rope: --in:", "missing.npy", "cannot open", "No such file or directory"), NULL, RUN_PLAIN },
    { "unreadable_file", "unreadable file (no read permission)",
      A("rope", "--in", "secret.npy", "--out", "y.npy"),
      K("--in:", "secret.npy", "cannot open", "Permission denied"), NULL, RUN_NOBODY },
    { "directory_as_input", "a directory instead of a file",
      A("rope", "--in", "sub", "--out", "y.npy"), K("--in:", "sub", "is a directory"), NULL, RUN_PLAIN },
    { "fifo_as_input", "a FIFO (named pipe) instead of a file (no hang)",
      A("rope", "--in", "fifo", "--out", "y.npy"), K("--in:", "fifo", "is a FIFO"), NULL, RUN_PLAIN },
    { "empty_file", "empty file", A("rope", "--in", "empty.npy", "--out", "y.npy"),
      K("empty.npy", "truncated: 0 bytes"), NULL, RUN_PLAIN },
    { "not_npy", "not a .npy file (text)", A("rope", "--in", "notes.txt", "--out", "y.npy"),
      K("notes.txt", "not a .npy file"), NULL, RUN_PLAIN },
    { "npz_archive", "a .npz archive (zip) instead of .npy",
      A("rope", "--in", "archive.npz", "--out", "y.npy"), K("archive.npz", "not a .npy file"),
      NULL, RUN_PLAIN },
    { "wrong_dtype_int", "wrong dtype: integers", A("rope", "--in", "int32.npy", "--out", "y.npy"),
      K("int32.npy", "dtype '<i4' is not supported", "'<f4' float32 and '<f8' float64"), NULL, RUN_PLAIN },
    { "wrong_dtype_half", "wrong dtype: float16", A("rope", "--in", "half.npy", "--out", "y.npy"),
      K("half.npy", "dtype '<f2' is not supported"), NULL, RUN_PLAIN },
    { "big_endian", "wrong byte order (big-endian)",
      A("rope", "--in", "big_endian.npy", "--out", "y.npy"),
      K("big_endian.npy", "'>f8' is big-endian", "astype('<f8')"), NULL, RUN_PLAIN },
    { "fortran_order", "wrong memory order (Fortran)",
      A("rope", "--in", "fortran.npy", "--out", "y.npy"),
      K("fortran.npy", "fortran_order True is not supported", "ascontiguousarray"), NULL, RUN_PLAIN },
    { "truncated_header", "truncated header", A("rope", "--in", "cut_header.npy", "--out", "y.npy"),
      K("cut_header.npy", "truncated: header length 118 runs past the end"), NULL, RUN_PLAIN },
    { "truncated_data", "truncated data", A("rope", "--in", "cut_data.npy", "--out", "y.npy"),
      K("cut_data.npy", "truncated: header says 24 bytes of data, file has 23"), NULL, RUN_PLAIN },
    { "trailing_bytes", "bytes after the data", A("rope", "--in", "trailing.npy", "--out", "y.npy"),
      K("trailing.npy", "trailing bytes"), NULL, RUN_PLAIN },
    { "malformed_header", "malformed header", A("rope", "--in", "bad_header.npy", "--out", "y.npy"),
      K("bad_header.npy", "malformed .npy header at byte", "unexpected key 'x'"), NULL, RUN_PLAIN },
    { "too_many_axes", "more axes than a .npy reader takes (9)",
      A("rope", "--in", "axes9.npy", "--out", "y.npy"), K("axes9.npy", "9 axes"), NULL, RUN_PLAIN },
    { "absurd_size", "absurd size in the header (4e18 bytes, file of 24)",
      A("rope", "--in", "huge.npy", "--out", "y.npy"),
      K("huge.npy", "truncated: header says 4000000000000000000 bytes of data"), NULL, RUN_PLAIN },
    { "count_overflow", "shape whose element count overflows",
      A("rope", "--in", "count_overflow.npy", "--out", "y.npy"),
      K("count_overflow.npy", "element count overflows size_t"), NULL, RUN_PLAIN },
    { "bytes_overflow", "shape whose byte count overflows",
      A("rope", "--in", "bytes_overflow.npy", "--out", "y.npy"),
      K("bytes_overflow.npy", "byte count exceeds PTRDIFF_MAX"), NULL, RUN_PLAIN },
    { "axis_overflow", "an axis beyond 64 bits",
      A("rope", "--in", "axis_overflow.npy", "--out", "y.npy"),
      K("axis_overflow.npy", "axis 0 does not fit size_t"), NULL, RUN_PLAIN },
    /* shapes */
    { "wrong_rank", "wrong number of axes (a vector)", A("rope", "--in", "vec.npy", "--out", "y.npy"),
      K("vec.npy has shape (8,)", "expected (n, d), (h, n, d) or (b, h, n, d)"), NULL, RUN_PLAIN },
    { "odd_dim_rope", "odd dimension where pairs are needed (rope)",
      A("rope", "--in", "odd.npy", "--out", "y.npy"),
      K("odd.npy has odd d = 7", "RoPE rotates pairs", "--rotary-dim"), NULL, RUN_PLAIN },
    { "odd_dim_attend", "odd dimension where pairs are needed (attend --rope qk)",
      A("attend", "--variant", "softmax", "--q", "odd.npy", "--k", "odd.npy", "--v", "odd.npy",
        "--out", "o.npy", "--rope", "qk"), K("ropekit attend:", "odd d = 7"), NULL, RUN_PLAIN },
    { "odd_feature_width", "odd feature width where pairs are needed (--rope features)",
      A("attend", "--variant", "performer", "--q", "q.npy", "--k", "k.npy", "--v", "v.npy", "--out",
        "o.npy", "--features", "7", "--rope", "features"),
      K("--rope features rotates the features in pairs", "odd feature width"), NULL, RUN_PLAIN },
    { "zero_dim", "zero size: d = 0", A("rope", "--in", "d0.npy", "--out", "y.npy"),
      K("d0.npy has shape (4, 0)", "d must be > 0"), NULL, RUN_PLAIN },
    { "zero_rows", "zero size: no queries",
      A("attend", "--variant", "softmax", "--q", "n0.npy", "--k", "k.npy", "--v", "v.npy", "--out",
        "o.npy"), K("--q:", "n0.npy has shape (0, 8)", "n_q and d must be > 0"), NULL, RUN_PLAIN },
    { "qk_dim_mismatch", "shape mismatch: K's d differs from Q's",
      A("attend", "--variant", "softmax", "--q", "q.npy", "--k", "k7.npy", "--v", "v.npy", "--out",
        "o.npy"), K("--k:", "k7.npy has shape (5, 7) but q has d = 8"), NULL, RUN_PLAIN },
    { "kv_len_mismatch", "shape mismatch: V's rows differ from K's",
      A("attend", "--variant", "softmax", "--q", "q.npy", "--k", "k.npy", "--v", "v5.npy", "--out",
        "o.npy"), K("--v:", "v5.npy has shape (5, 8) but k has n_kv = 4"), NULL, RUN_PLAIN },
    { "leading_axes_mismatch", "shape mismatch: heads/batch axes differ",
      A("attend", "--variant", "softmax", "--q", "q3.npy", "--k", "k.npy", "--v", "v.npy", "--out",
        "o.npy"), K("--k:", "the leading axes must match"), NULL, RUN_PLAIN },
    { "dtype_mismatch", "dtype mismatch between Q, K, V",
      A("attend", "--variant", "softmax", "--q", "q.npy", "--k", "kd.npy", "--v", "v.npy", "--out",
        "o.npy"), K("--k:", "kd.npy is float64 but q.npy is float32", "share a dtype"), NULL, RUN_PLAIN },
    { "bias_length_mismatch", "relative bias of the wrong length (--bias)",
      A("attend", "--variant", "softmax", "--q", "q.npy", "--k", "k.npy", "--v", "v.npy", "--out",
        "o.npy", "--bias", "vec.npy"),
      K("--bias:", "vec.npy has 8 values, expected 7 = n_q + n_kv - 1"), NULL, RUN_PLAIN },
    { "proj_shape_mismatch", "projection of the wrong width (--proj)",
      A("attend", "--variant", "performer", "--q", "q.npy", "--k", "k.npy", "--v", "v.npy", "--out",
        "o.npy", "--proj", "w6.npy"), K("--proj:", "w6.npy", "d = 8"), NULL, RUN_PLAIN },
    { "rotary_dim_too_big", "rotary dimension larger than the row",
      A("rope", "--in", "x.npy", "--out", "y.npy", "--rotary-dim", "10"),
      K("--rotary-dim 10 exceeds d = 8"), NULL, RUN_PLAIN },
    /* values */
    { "nan_input", "NaN in an input", A("rope", "--in", "nan.npy", "--out", "y.npy"),
      K("--in:", "nan.npy: element (1, 5) is NaN", "--allow-nonfinite accepts it"), NULL, RUN_PLAIN },
    { "inf_input", "Inf in an input",
      A("attend", "--variant", "softmax", "--q", "q.npy", "--k", "k.npy", "--v", "vinf.npy",
        "--out", "o.npy"), K("--v:", "vinf.npy: element (1, 1) is -Inf", "--allow-nonfinite"),
      NULL, RUN_PLAIN },
    { "float32_overflow", "float64 values beyond float32 under --precision float",
      A("attend", "--variant", "softmax", "--q", "qd.npy", "--k", "kbig.npy", "--v", "qd.npy",
        "--out", "o.npy", "--precision", "float"), K("--k:", "element (0, 0) is +Inf"), NULL, RUN_PLAIN },
    { "out_of_memory", "allocation failure (memory limit)",
      A("attend", "--variant", "performer", "--q", "q.npy", "--k", "k.npy", "--v", "v.npy", "--out",
        "o.npy", "--features", "100000000"),
      K("cannot create the attention plan: performer: cannot allocate"), NULL, RUN_LOWMEM },
    { "memory_request_too_big", "a run that would need absurd memory (refused up front)",
      A("decay", "--dim", "1048576", "--draws", "10000"),
      K("ropekit decay: --draws 10000 with --dim 1048576 needs 234 GiB (limit 2 GiB)"), NULL,
      RUN_PLAIN },
    { "output_too_big", "a run that would write absurdly many rows (refused up front)",
      A("decay", "--step", "1e-9"), K("gives 2.56e+11 rows; at most 10000000 (raise --step)"),
      NULL, RUN_PLAIN },
    /* option values */
    { "not_a_number", "option value: not a number",
      A("rope", "--in", "x.npy", "--out", "y.npy", "--base", "abc"),
      K("ropekit rope: --base: 'abc' is not a number"), NULL, RUN_PLAIN },
    { "trailing_junk_number", "option value: number with trailing junk",
      A("rope", "--in", "x.npy", "--out", "y.npy", "--base", "10000x"),
      K("--base: '10000x' is not a number"), NULL, RUN_PLAIN },
    { "nonfinite_option", "option value: NaN or Inf",
      A("attend", "--variant", "softmax", "--q", "q.npy", "--k", "k.npy", "--v", "v.npy", "--out",
        "o.npy", "--scale", "nan"), K("--scale: 'nan' is not a finite number"), NULL, RUN_PLAIN },
    { "integer_out_of_range", "option value: integer beyond 64 bits",
      A("rope", "--in", "x.npy", "--out", "y.npy", "--offset", "99999999999999999999"),
      K("--offset: '99999999999999999999' is out of range"), NULL, RUN_PLAIN },
    { "not_an_integer", "option value: fraction where an integer is needed",
      A("rope", "--in", "x.npy", "--out", "y.npy", "--offset", "1.5"),
      K("--offset: '1.5' is not an integer"), NULL, RUN_PLAIN },
    { "absurd_option", "option value: absurd size",
      A("attend", "--variant", "performer", "--q", "q.npy", "--k", "k.npy", "--v", "v.npy", "--out",
        "o.npy", "--features", "99999999999"), K("--features 99999999999 must be <= 1073741823"),
      NULL, RUN_PLAIN },
    { "zero_option", "option value: zero where a positive count is needed",
      A("attend", "--variant", "softmax", "--q", "q.npy", "--k", "k.npy", "--v", "v.npy", "--out",
        "o.npy", "--threads", "0"), K("--threads 0 must be >= 1"), NULL, RUN_PLAIN },
    { "negative_option", "option value: negative where it must be positive",
      A("rope", "--in", "x.npy", "--out", "y.npy", "--base", "-2"), K("--base -2 must be > 0"),
      NULL, RUN_PLAIN },
    { "position_overflow", "positions beyond 64 bits (offset + n)",
      A("rope", "--in", "x.npy", "--out", "y.npy", "--offset", "9223372036854775807"),
      K("--offset 9223372036854775807: the last position P + 3 overflows a 64-bit integer"), NULL,
      RUN_PLAIN },
    { "kv_len_too_big", "key length beyond the keys",
      A("attend", "--variant", "softmax", "--q", "q.npy", "--k", "k.npy", "--v", "v.npy", "--out",
        "o.npy", "--kv-len", "5"), K("--kv-len 5 exceeds n_kv = 4"), NULL, RUN_PLAIN },
    { "unknown_choice", "option value: unknown name",
      A("rope", "--in", "x.npy", "--out", "y.npy", "--style", "neox"),
      K("unknown style 'neox' (expected: interleaved, half)"), NULL, RUN_PLAIN },
    { "bad_spec", "option value: malformed spec",
      A("rope", "--in", "x.npy", "--out", "y.npy", "--scaling", "yarn:8"),
      K("--scaling 'yarn:8': yarn takes two fields"), NULL, RUN_PLAIN },
    { "bad_list", "option value: malformed list",
      A("approx", "--norms", "1,,2"), K("ropekit approx: --norms: empty item in the list"), NULL, RUN_PLAIN },
    { "empty_value", "option value: empty",
      A("rope", "--in", "x.npy", "--out", "y.npy", "--base="), K("--base: empty value"), NULL, RUN_PLAIN },
    { "missing_value", "option without its value",
      A("rope", "--in", "x.npy", "--out", "y.npy", "--base"), K("--base needs a value (B)"), NULL, RUN_PLAIN },
    { "flag_with_value", "value given to a flag",
      A("rope", "--in", "x.npy", "--out", "y.npy", "--inverse=yes"),
      K("--inverse is a flag and takes no value"), NULL, RUN_PLAIN },
    { "repeated_option", "option given twice",
      A("rope", "--in", "x.npy", "--out", "y.npy", "--offset", "1", "--offset", "2"),
      K("--offset given more than once"), NULL, RUN_PLAIN },
    { "unknown_option", "unknown option",
      A("rope", "--in", "x.npy", "--out", "y.npy", "--bogus", "1"),
      K("unknown option '--bogus'", "ropekit rope --help"), NULL, RUN_PLAIN },
    { "stray_argument", "stray argument", A("rope", "--in", "x.npy", "--out", "y.npy", "stray"),
      K("unexpected argument 'stray'"), NULL, RUN_PLAIN },
    { "missing_required", "required option missing", A("rope", "--in", "x.npy"),
      K("missing required option --out"), NULL, RUN_PLAIN },
    { "inapplicable_option", "option that does not apply to the variant",
      A("attend", "--variant", "softmax", "--q", "q.npy", "--k", "k.npy", "--v", "v.npy", "--out",
        "o.npy", "--seed", "2"), K("--seed applies to --variant performer only"), NULL, RUN_PLAIN },
    { "unknown_command", "unknown command", A("frobnicate"), K("ropekit: unknown command 'frobnicate'"),
      NULL, RUN_PLAIN },
    { "control_chars_in_argument", "control characters in an argument (one line still)",
      A("rope", "--in", "a\nb.npy", "--out", "y.npy"), K("--in: a\\nb.npy: cannot open"), NULL, RUN_PLAIN },
    /* outputs */
    { "output_dir_missing", "output in a directory that does not exist",
      A("rope", "--in", "x.npy", "--out", "nodir/y.npy"),
      K("--out:", "nodir/y.npy", "cannot create a temporary file beside it", "No such file"), NULL, RUN_PLAIN },
    { "output_is_directory", "output path is a directory",
      A("rope", "--in", "x.npy", "--out", "sub"), K("--out:", "sub", "rename failed", "unchanged"),
      NULL, RUN_PLAIN },
    { "output_names_clash", "two outputs with the same name",
      A("attend", "--variant", "performer", "--q", "q.npy", "--k", "k.npy", "--v", "v.npy", "--out",
        "o.npy", "--save-proj", "o.npy"), K("--save-proj and --out name the same file"), NULL, RUN_PLAIN },
    { "resume_other_settings", "resuming a table written with other settings",
      A("approx", "--variants", "performer", "--kernels", "positive", "--projs", "iid", "--m-min",
        "8", "--m-max", "16", "--norms", "1", "--n", "8", "--d", "4", "--seeds", "3", "--out",
        "a.tsv", "--resume"),
      K("--out:", "a.tsv' was written with other settings ('seeds=2' there, 'seeds=3' now)"),
      make_approx_table, RUN_PLAIN },
    { "resume_not_a_table", "resuming a file that is not this command's table",
      A("scaling", "--variants", "softmax", "--n-min", "8", "--n-max", "8", "--out", "table.tsv",
        "--resume"), K("--out:", "table.tsv' was written with other settings"), NULL, RUN_PLAIN },
};
#undef A
#undef K
#define NROWS (sizeof rows / sizeof rows[0])

/* ---- running a row ----------------------------------------------------------------------------- */
static char doc[65536];   /* the markdown table, filled as the rows run */
static size_t doc_len;

/* s with every occurrence of "<dir>/" removed, '|' escaped for markdown. */
static void doc_text(const char *s, char *out, size_t cap)
{
    char prefix[600];
    snprintf(prefix, sizeof prefix, "%s/", dir);
    size_t pl = strlen(prefix), n = 0;
    while (*s && n + 3 < cap) {
        if (!strncmp(s, prefix, pl)) { s += pl; continue; }
        if (*s == '|') out[n++] = '\\';
        if (*s == '\n') { out[n++] = '\\'; out[n++] = 'n'; s++; continue; }
        out[n++] = *s++;
    }
    out[n] = '\0';
}

static void doc_row(const row *r, const run_cli_result *res)
{
    char cmd[1024] = "ropekit", msg[2048];
    for (int i = 0; r->args[i]; i++) {
        size_t n = strlen(cmd);
        char a[256];
        doc_text(r->args[i], a, sizeof a);
        snprintf(cmd + n, sizeof cmd - n, strchr(a, ' ') || strchr(a, '\\') ? " '%s'" : " %s", a);
    }
    char line[2048];
    size_t ll = strcspn(res->err, "\n");
    if (ll >= sizeof line) ll = sizeof line - 1;
    memcpy(line, res->err, ll);
    line[ll] = '\0';
    doc_text(line, msg, sizeof msg);
    doc_len += (size_t)snprintf(doc + doc_len, sizeof doc - doc_len,
                                "| %s | `%s` | `%s` | %d | `%s` |\n", r->klass, cmd, msg,
                                res->code, r->name);
    if (doc_len >= sizeof doc) doc_len = sizeof doc - 1;
}

static void run_row(void **state)
{
    const row *r = *state;
    if (r->prepare) r->prepare();
    listing before, after;
    list_dir(&before);
    run_cli_result res;
    run_cli_opts o = { -1, 0, NULL, NULL };
    if (r->how == RUN_NOBODY && geteuid() == 0) {
        /* nobody (65534) may enter the directory but not read the file */
        assert_int_equal(chmod(dir, 0711), 0);
        o.uid = 65534;
    }
#ifdef RK_ASAN
    static const char *const asan_env[] = {
        "ASAN_OPTIONS=allocator_may_return_null=1:max_allocation_size_mb=1000:detect_leaks=1", NULL };
    if (r->how == RUN_LOWMEM) o.env = asan_env;
#else
    if (r->how == RUN_LOWMEM) o.mem_limit_mb = 1000;
#endif
    run_cli_ex(r->args, dir, 60, &o, &res);
    if (o.uid >= 0) assert_int_equal(chmod(dir, 0700), 0);
#ifdef RK_ASAN
    /* AddressSanitizer announces the refused allocation on stderr before returning NULL */
    char *w;
    if (r->how == RUN_LOWMEM && !strncmp(res.err, "==", 2) &&
        (w = strstr(res.err, "AddressSanitizer failed to allocate")) && (w = strchr(w, '\n')))
        memmove(res.err, w + 1, strlen(w + 1) + 1);
#endif
    list_dir(&after);
    if (res.code != 2) fail_msg("exit %d (want 2); stderr: %s", res.code, res.err);
    if (res.out[0]) fail_msg("stdout not empty: %s", res.out);
    size_t n = strlen(res.err);
    const char *nl = strchr(res.err, '\n');
    if (n == 0 || !nl || nl != res.err + n - 1) fail_msg("want one stderr line, got: '%s'", res.err);
    if (strncmp(res.err, "ropekit", 7) || (res.err[7] != ' ' && res.err[7] != ':'))
        fail_msg("message lacks the 'ropekit' prefix: %s", res.err);
    for (int i = 0; r->keys[i]; i++)
        if (!strstr(res.err, r->keys[i])) fail_msg("stderr lacks '%s': %s", r->keys[i], res.err);
    assert_same_listing(&before, &after);
    doc_row(r, &res);
}

/* ---- group ----------------------------------------------------------------------------------- */
static void remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[1024];
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            remove_tree(p);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static int setup(void **state)
{
    (void)state;
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/ropekit-badinput-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(dir)) return -1;
    make_fixtures();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    remove_tree(dir);
    const char *path = getenv("RK_BADINPUT_DOC");
    if (path && *path) {
        FILE *f = fopen(path, "w");
        if (!f) {
            fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
            return -1;
        }
        fputs("# Bad input\n\n"
              "What `ropekit` does with every class of bad input: the one line it prints on "
              "stderr\n(verbatim) and its exit status. On every error the exit status is 2, "
              "stdout is empty and\nno file is created or changed (no output, no temporary "
              "file, inputs and existing outputs\nbyte for byte as before). Each row is a test "
              "of tests/test_badinput.c, which checks all of\nthat against the real binary "
              "and writes this table:\n"
              "`RK_BADINPUT_DOC=docs/bad-input.md build/tests/test_badinput`. Paths are "
              "relative to the\ndirectory the commands ran in.\n\n"
              "NaN and Inf are refused by default (naming the option, the file and the first "
              "bad index);\n`--allow-nonfinite` passes them through. Library callers get the "
              "same classes as `RK_E*` codes\nwith `rk_last_error()`: sizes beyond what the "
              "index types of BLAS and FFTW hold, or whose\nbyte counts overflow, are "
              "`RK_EOVERFLOW` before anything is allocated, and allocation failure is\n"
              "`RK_ENOMEM` with nothing leaked (tests/test_limits.c).\n\n", f);
        fprintf(f, "| input class | example | message | exit status | test (tests/test_badinput.c) |\n"
                   "|---|---|---|---|---|\n%s", doc);
        fclose(f);
    }
    return 0;
}

int main(void)
{
    struct CMUnitTest tests[NROWS];
    for (size_t i = 0; i < NROWS; i++)
        tests[i] = (struct CMUnitTest){ rows[i].name, run_row, NULL, NULL, (void *)&rows[i] };
    return cmocka_run_group_tests_name("badinput", tests, setup, teardown);
}
