/* Errors, version, aligned allocation and matrix buffers. */
#include "rk_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char rk__msg[512];

const char *rk_version(void) { return RK_VERSION; }

const char *rk_strerror(int err)
{
    static const char *const names[RK_NERRORS] = {
        [RK_OK]          = "success",
        [RK_EINVAL]      = "invalid argument",
        [RK_EDIM]        = "dimension mismatch",
        [RK_ENOMEM]      = "out of memory",
        [RK_EOVERFLOW]   = "size overflow",
        [RK_EUNSUP]      = "unsupported",
        [RK_EDEP]        = "dependency failure",
        [RK_EIO]         = "input/output error",
        [RK_EFORMAT]     = "malformed input",
        [RK_ENONFINITE]  = "non-finite value",
    };
    if (err < 0 || err >= RK_NERRORS) return "unknown error code";
    return names[err];
}

const char *rk_last_error(void) { return rk__msg; }
void rk__clear_error(void) { rk__msg[0] = '\0'; }

int rk__fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rk__msg, sizeof rk__msg, fmt, ap);
    va_end(ap);
#ifdef RK_DEBUG
    fprintf(stderr, "ropekit: %s: %s\n", rk_strerror(code), rk__msg);
#endif
    return code;
}

/* Allocation-failure injection for tests: counts calls across all threads of the process.
 * Plans allocate only at creation (single-threaded), so a plain counter is enough. */
static long rk__fail_after = -1;
void rk__alloc_fail_after(long n) { rk__fail_after = n; }

void *rk__alloc(size_t bytes)
{
    if (rk__fail_after == 0) return NULL;
    if (rk__fail_after > 0) rk__fail_after--;
    if (bytes == 0) bytes = 1;
    size_t rounded;
    if (rk__add(bytes, 63, &rounded) || rounded > (size_t)PTRDIFF_MAX) return NULL;
    rounded &= ~(size_t)63;
    void *p = aligned_alloc(64, rounded);
    if (p) memset(p, 0, rounded);
    return p;
}

void rk__free(void *p) { free(p); }

void *rk__take(size_t *bytes, size_t a, size_t b, size_t elt, const char *who, const char *what,
               int *rc)
{
    size_t n, nb;
    if (rk__mul(a, b, &n) || rk__bytes(n, elt, &nb)) {
        *rc = rk__fail(RK_EOVERFLOW, "%s: %s (%zu x %zu) is too large", who, what, a, b);
        return NULL;
    }
    void *ptr = rk__alloc(nb);
    if (!ptr) {
        *rc = rk__fail(RK_ENOMEM, "%s: cannot allocate %zu bytes for %s", who, nb, what);
        return NULL;
    }
    if (bytes) *bytes += rk__alloc_size(nb);
    *rc = RK_OK;
    return ptr;
}

int rk__check_view(const char *name, const void *data, size_t rows, size_t cols, size_t ld,
                   size_t want_rows, size_t want_cols)
{
    if (rows != want_rows || cols != want_cols)
        RK_FAIL(RK_EDIM, "%s is %zu x %zu, expected %zu x %zu", name, rows, cols,
                want_rows, want_cols);
    if (ld < cols)
        RK_FAIL(RK_EDIM, "%s has leading dimension %zu < %zu columns", name, ld, cols);
    if (rows > 0 && cols > 0 && data == NULL)
        RK_FAIL(RK_EINVAL, "%s has NULL data", name);
    size_t span;
    if (rows > 0 && (rk__mul(rows - 1, ld, &span) || rk__add(span, cols, &span) ||
                     span > (size_t)PTRDIFF_MAX / sizeof(double)))
        RK_FAIL(RK_EOVERFLOW, "%s: %zu rows with ld %zu overflow", name, rows, ld);
    return RK_OK;
}

static int mat_alloc(void **data, size_t rows, size_t cols, size_t elt)
{
    size_t n, bytes;
    if (rk__mul(rows, cols, &n) || rk__bytes(n, elt, &bytes))
        RK_FAIL(RK_EOVERFLOW, "matrix %zu x %zu: byte count overflows", rows, cols);
    *data = rk__alloc(bytes);
    if (!*data) RK_FAIL(RK_ENOMEM, "matrix %zu x %zu: cannot allocate %zu bytes", rows, cols, bytes);
    return RK_OK;
}

int rk_mat_alloc(rk_mat *m, size_t rows, size_t cols)
{
    rk__clear_error();
    if (!m) RK_FAIL(RK_EINVAL, "rk_mat_alloc: m is NULL");
    void *p = NULL;
    *m = (rk_mat){ 0 };
    int rc = mat_alloc(&p, rows, cols, sizeof(float));
    if (rc) return rc;
    *m = rk_mat_view(p, rows, cols, cols);
    return RK_OK;
}

int rk_matd_alloc(rk_matd *m, size_t rows, size_t cols)
{
    rk__clear_error();
    if (!m) RK_FAIL(RK_EINVAL, "rk_matd_alloc: m is NULL");
    void *p = NULL;
    *m = (rk_matd){ 0 };
    int rc = mat_alloc(&p, rows, cols, sizeof(double));
    if (rc) return rc;
    *m = rk_matd_view(p, rows, cols, cols);
    return RK_OK;
}

void rk_mat_free(rk_mat *m)  { if (m) { rk__free(m->data); *m = (rk_mat){ 0 }; } }
void rk_matd_free(rk_matd *m) { if (m) { rk__free(m->data); *m = (rk_matd){ 0 }; } }
