/* The backward of RoPE: y = m R x (m the attention factor, 1 unless YaRN) gives
 * dL/dx = m R^T dL/dy. rk_rope_apply's inverse computes R^T y / m (it undoes the forward), so
 * the gradient is that inverse times m^2 on the rotated channels; the channels past
 * rotary_dim pass through (identity, gradient identity). */
#include "rk_internal.h"

#define RK_ROPE_BACKWARD(NAME, APPLY, MAT, REAL)                                              \
    int NAME(const rk_rope *r, const MAT *dy, MAT *dx, int64_t pos0, const int64_t *pos)   \
    {                                                                                         \
        int rc = APPLY(r, dy, dx, pos0, pos, 1);                                              \
        if (rc) return rc;                                                                    \
        const double m = rk_rope_mscale(r);                                                   \
        if (m == 1.0 || !dx->rows || !dx->cols) return RK_OK;                                 \
        const rk_rope_config *c = rk_rope_get_config(r);                                      \
        const REAL m2 = (REAL)(m * m);                                                        \
        for (size_t t = 0; t < dx->rows; t++)                                                 \
            for (size_t h0 = 0; h0 < dx->cols; h0 += c->dim)                                  \
                for (size_t ch = 0; ch < c->rotary_dim; ch++)                                 \
                    dx->data[t * dx->ld + h0 + ch] *= m2;                                     \
        return RK_OK;                                                                         \
    }

RK_ROPE_BACKWARD(rk_rope_backward, rk_rope_apply, rk_mat, float)
RK_ROPE_BACKWARD(rk_rope_backward_d, rk_rope_apply_d, rk_matd, double)
