/* Checks every attention backward goes through (tests/test_grad_*.c): the double backward
 * against central finite differences of the double forward, with a tolerance derived from the
 * step, a measured third derivative and the forward's rounding (printed on failure); the
 * float32 backward against the double one; the same bits for 1 and 2 threads; padded and
 * causally unseen keys contributing nothing (with NaN planted in them); RoPE's relative
 * property for gradients (a common shift of every position leaves them unchanged).
 *
 * The loss is L = sum(dout .* out) for a fixed random dout, so dL/dq = dq of the backward. */
#ifndef RK_TEST_GRAD_CHECK_H
#define RK_TEST_GRAD_CHECK_H

#include "check.h"

typedef struct {
    rk_attn_config cfg;      /* the plan (nthreads is set by each check)                     */
    size_t         kv_len;   /* RK_ALL_KEYS or a padding length                              */
    double         sigma;    /* standard deviation of q and k (v and dout: 1); 0: 1          */
    unsigned long  seed;     /* data seed (0: 1)                                             */
} grad_case;

/* The inputs of a case: q, k, v, dout in double and float, NaN-padded views. */
typedef struct {
    rk_matd q, k, v, dout;
    rk_mat  qf, kf, vf, doutf;
} grad_data;
void grad_data_make(const grad_case *gc, grad_data *d);
void grad_data_free(grad_data *d);

/* The double backward against central differences for every element of q, k and v. Returns
 * the largest |analytic - fd| / tolerance (<= 1 passes; the check fails the test otherwise). */
double grad_check_fd(const grad_case *gc, const char *what);
/* The float32 backward against the double one: |g_f - g_d| <= rtol * max|g_d| + atol per
 * gradient (callers pass bounds derived from float rounding); returns the worst ratio. */
double grad_check_f32(const grad_case *gc, const char *what, double rtol, double atol);
/* Bitwise identical gradients (both paths) with 1 and 2 threads. */
void grad_check_threads(const grad_case *gc, const char *what);
/* Keys past kv_len (when gc->kv_len < n_kv) and, for causal plans, keys no query sees hold
 * NaN: every gradient stays finite and equal to the clean run's, and those keys get exactly
 * zero dk, dv. Causal: dq of row i does not change when k, v of the keys after its last
 * visible key change. */
void grad_check_masks(const grad_case *gc, const char *what);
/* RoPE (rope != none): the gradients with pos_offset = 0 and = shift agree to rtol. */
void grad_check_shift(const grad_case *gc, int64_t shift, double rtol, const char *what);

#endif
