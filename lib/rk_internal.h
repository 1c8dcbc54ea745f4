/* Internals shared by the lib/ sources. Not installed; every symbol is rk__ or static inline. */
#ifndef RK_INTERNAL_H
#define RK_INTERNAL_H

#include "ropekit.h"
#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#define RK_PI 3.14159265358979323846

/* Record a failure (code + printf-style detail, kept per thread for rk_last_error) and
 * return the code: `return rk__fail(RK_EDIM, "q has %zu columns, plan has d = %zu", ...)`.
 * One function to break on in a debugger (GSL's gsl_error idea). */
int rk__fail(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
#define RK_FAIL(code, ...) return rk__fail((code), __VA_ARGS__)

/* for (size_t VAR = 0; VAR < n; VAR++) { body }: split over nt threads (schedule(static)) when
 * par is true and nt > 1, else a plain loop. Not `#pragma omp parallel for if (par)`: libgomp
 * still builds a team of one for every such region (about 2 us here, a futex call on some VMs),
 * and the FAVOR+ kernels run thousands of small loops per call. Each VAR does the same work
 * either way, so the bits do not depend on the path. A body needing `omp simd` writes
 * _Pragma("omp simd"). */
#define RK_PAR_FOR(par, nt, VAR, n, ...)                                                        \
    do {                                                                                        \
        const size_t rk__n_ = (n);                                                              \
        const int rk__nt_ = (nt);                                                               \
        if ((par) && rk__nt_ > 1) {                                                             \
            _Pragma("omp parallel for schedule(static) num_threads(rk__nt_)")                   \
            for (size_t VAR = 0; VAR < rk__n_; VAR++) { __VA_ARGS__ }                          \
        } else {                                                                                \
            for (size_t VAR = 0; VAR < rk__n_; VAR++) { __VA_ARGS__ }                          \
        }                                                                                       \
    } while (0)
void rk__clear_error(void);

/* Overflow-checked size arithmetic: 0 on success, nonzero if a*b (a+b) overflows size_t. */
static inline int rk__mul(size_t a, size_t b, size_t *out)
{ return __builtin_mul_overflow(a, b, out); }
static inline int rk__add(size_t a, size_t b, size_t *out)
{ return __builtin_add_overflow(a, b, out); }
/* Byte count of n elements of size elt, checked; also refuses counts > PTRDIFF_MAX. */
static inline int rk__bytes(size_t n, size_t elt, size_t *out)
{ return rk__mul(n, elt, out) || *out > (size_t)PTRDIFF_MAX; }
/* Sizes handed to CBLAS / FFTW must fit an int. */
static inline int rk__fits_int(size_t n) { return n <= (size_t)INT_MAX; }

/* 64-byte aligned, zero-filled allocation of `bytes` (rounded up to 64 as C11 requires).
 * NULL on failure or bytes == 0 overflow. Free with rk__free. Test builds can make it fail
 * on the k-th call (rk__alloc_fail_after) to prove every error path frees what it took. */
void *rk__alloc(size_t bytes);
void  rk__free(void *p);
void  rk__alloc_fail_after(long n);   /* -1: never fail (default); n: the (n+1)-th call fails */
/* The plans' allocator: a * b elements of elt bytes through rk__alloc (never NULL on success,
 * even for 0 elements), the size actually taken added to *bytes (a plan's rk_attn_bytes).
 * On failure NULL with *rc = RK_EOVERFLOW (the byte count overflows) or RK_ENOMEM and a
 * message "<who>: ... <what>". */
void *rk__take(size_t *bytes, size_t a, size_t b, size_t elt, const char *who, const char *what,
               int *rc);
/* What rk__alloc really takes for a request of n bytes: at least 1, rounded up to 64. */
static inline size_t rk__alloc_size(size_t n) { return ((n ? n : 1) + 63) & ~(size_t)63; }

/* The kernel path of a plan (lib/isa.c): want (a config's isa; RK_ISA_AUTO: ROPEKIT_ISA or the
 * widest the CPU has) checked against the CPU (RK_EUNSUP if it lacks it, RK_EINVAL for an
 * unknown value or ROPEKIT_ISA), then capped at `widest`, the widest path the caller's kernels
 * have. `who` names the plan in messages. */
int rk__isa_pick(rk_isa want, rk_isa widest, const char *who, rk_isa *out);

/* Validate a view: data non-NULL when non-empty, ld >= cols, rows*ld fits. `name` is used in
 * the message ("q", "k", ...). Returns RK_OK or RK_EDIM/RK_EINVAL with the message set. */
int rk__check_view(const char *name, const void *data, size_t rows, size_t cols, size_t ld,
                   size_t want_rows, size_t want_cols);

#endif
