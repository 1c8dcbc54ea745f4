/* libFuzzer target: the .npy reader (scripts/fuzz.sh builds and runs it).
 *
 * The input is a whole file. For every input:
 *   1. rk_npy_load_mem returns a known code; on failure the output is zeroed and the message is
 *      one non-empty line; on success the array is consistent (dtype, 0..8 axes, count = product
 *      of the shape, 64-byte aligned data, data size = what the input holds after the header).
 *   2. rk_npy_load on the same bytes written to a file gives the same code and the same array
 *      (the file path and the memory path must agree).
 *   3. A loaded array: rk_array_check_finite agrees with a plain scan; rk_npy_save then load
 *      gives the same array back, and saving that again gives the same bytes (canonical form).
 *   4. Allocation failure (rk__alloc_fail_after): the memory reader returns RK_ENOMEM where it
 *      succeeded and the same code where it failed (every check comes before the allocation);
 *      the file reader returns RK_ENOMEM or its earlier error. LeakSanitizer (on by default in
 *      libFuzzer) reports anything an error path leaks.
 * A broken invariant aborts with a message: libFuzzer saves the input as a crash. */
#include "rk_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[256], in_path[300], out_path[300], out2_path[300];

#define CHECK(cond, ...)                                                                    \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "fuzz_npy: invariant broken: %s: ", #cond);                     \
            fprintf(stderr, __VA_ARGS__);                                                   \
            fprintf(stderr, "\n");                                                          \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

static void cleanup(void)
{
    unlink(in_path);
    unlink(out_path);
    unlink(out2_path);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* tmpfs when there is one: the file round trips fsync, which costs nothing there */
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/rk-fuzz-npy-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir)) {
        perror("fuzz_npy: mkdtemp");
        abort();
    }
    snprintf(in_path, sizeof in_path, "%s/in.npy", dir);
    snprintf(out_path, sizeof out_path, "%s/out.npy", dir);
    snprintf(out2_path, sizeof out2_path, "%s/out2.npy", dir);
    atexit(cleanup);
    return 0;
}

static size_t elt(rk_dtype t) { return t == RK_F64 ? 8 : 4; }

static void check_message(int rc, const char *where)
{
    const char *m = rk_last_error();
    CHECK(rc > RK_OK && rc < RK_NERRORS, "%s: code %d", where, rc);
    CHECK(m[0] != '\0', "%s: %s without a message", where, rk_strerror(rc));
    CHECK(strchr(m, '\n') == NULL, "%s: message spans lines: %s", where, m);
}

static void check_zeroed(const rk_array *a, const char *where)
{
    CHECK(a->data == NULL && a->count == 0 && a->ndim == 0, "%s: failure left data behind",
          where);
}

static void check_array(const rk_array *a, size_t input_size)
{
    CHECK(a->dtype == RK_F32 || a->dtype == RK_F64, "dtype %d", (int)a->dtype);
    CHECK(a->ndim >= 0 && a->ndim <= RK_NPY_MAXDIM, "ndim %d", a->ndim);
    size_t n = 1;
    int zero = 0;
    for (int i = 0; i < a->ndim; i++) zero |= a->shape[i] == 0;
    for (int i = 0; i < a->ndim && !zero; i++)
        CHECK(!__builtin_mul_overflow(n, a->shape[i], &n), "shape product overflows");
    if (zero) n = 0;
    CHECK(a->count == n, "count %zu, shape product %zu", a->count, n);
    CHECK(a->data != NULL, "NULL data for %zu elements", a->count);
    CHECK((uintptr_t)a->data % 64 == 0, "data not 64-byte aligned");
    CHECK(a->count * elt(a->dtype) < input_size, "%zu elements from %zu bytes", a->count,
          input_size);
}

static void check_same(const rk_array *a, const rk_array *b, const char *what)
{
    CHECK(a->dtype == b->dtype && a->ndim == b->ndim && a->count == b->count, "%s: header",
          what);
    for (int i = 0; i < a->ndim; i++) CHECK(a->shape[i] == b->shape[i], "%s: axis %d", what, i);
    CHECK(a->count == 0 || memcmp(a->data, b->data, a->count * elt(a->dtype)) == 0,
          "%s: data differ", what);
}

static void write_file(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "cannot create %s", path);
    CHECK(size == 0 || fwrite(data, 1, size, f) == size, "cannot write %s", path);
    CHECK(fclose(f) == 0, "cannot close %s", path);
}

static uint8_t *read_file(const char *path, size_t *size)
{
    struct stat st;
    CHECK(stat(path, &st) == 0, "cannot stat %s", path);
    uint8_t *p = malloc((size_t)st.st_size + 1);
    CHECK(p != NULL, "malloc");
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "cannot open %s", path);
    *size = fread(p, 1, (size_t)st.st_size, f);
    fclose(f);
    CHECK(*size == (size_t)st.st_size, "short read of %s", path);
    return p;
}

/* The first non-finite element by a plain scan, or count. */
static size_t first_nonfinite(const rk_array *a)
{
    for (size_t i = 0; i < a->count; i++) {
        double x = a->dtype == RK_F32 ? (double)((const float *)a->data)[i]
                                      : ((const double *)a->data)[i];
        if (!isfinite(x)) return i;
    }
    return a->count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rk__alloc_fail_after(-1);

    /* 1. memory */
    rk_array a;
    memset(&a, 0xa5, sizeof a);   /* garbage in: the reader must overwrite it */
    int rc = rk_npy_load_mem(data, size, &a);
    if (rc) {
        check_message(rc, "load_mem");
        check_zeroed(&a, "load_mem");
    } else {
        check_array(&a, size);
    }

    /* 2. the same bytes as a file */
    write_file(in_path, data, size);
    rk_array b;
    int rcf = rk_npy_load(in_path, &b);
    CHECK(rcf == rc, "load_mem: %s, load: %s (%s)", rk_strerror(rc), rk_strerror(rcf),
          rk_last_error());
    if (rcf) {
        check_message(rcf, "load");
        check_zeroed(&b, "load");
    } else {
        check_same(&a, &b, "load vs load_mem");
        CHECK(b.data != NULL && (uintptr_t)b.data % 64 == 0, "load: data");
    }
    rk_array_free(&b);

    if (rc == RK_OK) {
        /* 3. finiteness, and the save/load round trip */
        size_t bad = first_nonfinite(&a);
        int rcn = rk_array_check_finite(&a, "x");
        CHECK(rcn == (bad < a.count ? RK_ENONFINITE : RK_OK), "check_finite: %s",
              rk_strerror(rcn));
        if (rcn) {
            check_message(rcn, "check_finite");
            CHECK(strncmp(rk_last_error(), "x: element (", 12) == 0, "message %s",
                  rk_last_error());
        }
        int rcs = rk_npy_save(out_path, &a);
        CHECK(rcs == RK_OK, "save: %s", rk_last_error());
        rk_array c;
        CHECK(rk_npy_load(out_path, &c) == RK_OK, "reload: %s", rk_last_error());
        check_same(&a, &c, "save + load");
        CHECK(rk_npy_save(out2_path, &c) == RK_OK, "save again: %s", rk_last_error());
        size_t n1, n2;
        uint8_t *s1 = read_file(out_path, &n1), *s2 = read_file(out2_path, &n2);
        CHECK(n1 == n2 && memcmp(s1, s2, n1) == 0, "saving twice gives different bytes");
        free(s1);
        free(s2);
        rk_array_free(&c);
    }

    /* 4. allocation failure at each of the reader's allocations */
    for (long k = 0; k < 3; k++) {
        rk_array m;
        rk__alloc_fail_after(k);
        int r = rk_npy_load_mem(data, size, &m);
        rk__alloc_fail_after(-1);
        if (k == 0) {
            CHECK(r == (rc ? rc : RK_ENOMEM), "load_mem with no memory: %s, expected %s",
                  rk_strerror(r), rk_strerror(rc ? rc : RK_ENOMEM));
        } else {
            CHECK(r == rc, "load_mem with %ld allocations: %s", k, rk_strerror(r));
        }
        if (r) check_zeroed(&m, "load_mem (no memory)");
        rk_array_free(&m);

        rk__alloc_fail_after(k);
        r = rk_npy_load(in_path, &m);
        rk__alloc_fail_after(-1);
        CHECK(r == rc || r == RK_ENOMEM, "load with %ld allocations: %s, expected %s or %s", k,
              rk_strerror(r), rk_strerror(rc), rk_strerror(RK_ENOMEM));
        if (r) {
            check_message(r, "load (no memory)");
            check_zeroed(&m, "load (no memory)");
        } else {
            check_same(&a, &m, "load with allocation limit");
        }
        rk_array_free(&m);
    }
    rk_array_free(&a);
    return 0;
}
