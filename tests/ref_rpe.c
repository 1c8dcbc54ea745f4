#include "ref_rpe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* x (d) divided by its norm unless it is zero */
static void l2n(double *x, size_t d)
{
    double ss = 0.0;
    for (size_t i = 0; i < d; i++) ss += x[i] * x[i];
    if (ss > 0.0)
        for (size_t i = 0; i < d; i++) x[i] /= sqrt(ss);
}

void ref_rpe_attention(const ref_rpe_cfg *c, const rk_matd *q, const rk_matd *k,
                       const rk_matd *v, rk_matd *out, size_t kv_len)
{
    const ref_linear_cfg *lc = &c->lin;
    size_t nq = q->rows, nkv = k->rows, d = q->cols, dv = v->cols, F = ref_linear_width(lc, d);
    if (kv_len > nkv) kv_len = nkv;
    double *x = malloc(d * sizeof(double)), *pq = malloc(F * sizeof(double));
    double *pk = malloc((nkv * F + 1) * sizeof(double)), *lk = malloc((nkv + 1) * sizeof(double));
    double *num = malloc(dv * sizeof(double));
    if (!x || !pq || !pk || !lk || !num) abort();

    // 1. every key's features with its own constant lk[j]
    for (size_t j = 0; j < nkv; j++) {
        memcpy(x, k->data + j * k->ld, d * sizeof(double));
        if (c->l2norm) l2n(x, d);
        lk[j] = ref_linear_lmax(lc, x, d);
        ref_linear_phi(lc, x, d, lk[j], pk + j * F);
    }
    for (size_t i = 0; i < nq; i++) {
        double *o = out->data + i * out->ld;
        for (size_t t = 0; t < dv; t++) o[t] = 0.0;
        // 2. keys j < L: causal bottom-right (j <= i + n_kv - n_q), then the padding
        int64_t last = (int64_t)i + (int64_t)nkv - (int64_t)nq;
        size_t L = kv_len;
        if (lc->causal) L = last < 0 ? 0 : ((size_t)last + 1 < L ? (size_t)last + 1 : L);
        if (L == 0) continue;
        memcpy(x, q->data + i * q->ld, d * sizeof(double));
        if (c->l2norm) l2n(x, d);
        ref_linear_phi(lc, x, d, ref_linear_lmax(lc, x, d), pq);
        // 3. constants shared by the keys this query sees: max exponent, max bias
        double ck = -INFINITY, bmax = -INFINITY;
        for (size_t j = 0; j < L; j++) {
            if (lk[j] > ck) ck = lk[j];
            double b = c->bias ? c->bias[j + nq - 1 - i] : 0.0;
            if (b > bmax) bmax = b;
        }
        if (bmax == -INFINITY) continue;
        double den = 0.0;
        for (size_t t = 0; t < dv; t++) num[t] = 0.0;
        for (size_t j = 0; j < L; j++) {
            double b = c->bias ? c->bias[j + nq - 1 - i] : 0.0;
            if (b == -INFINITY) continue;
            double w = 0.0;
            for (size_t r = 0; r < F; r++) w += pq[r] * pk[j * F + r];
            w *= exp(lk[j] - ck) * exp(b - bmax);
            den += w;
            for (size_t t = 0; t < dv; t++) num[t] += w * v->data[j * v->ld + t];
        }
        if (den != 0.0)
            for (size_t t = 0; t < dv; t++) o[t] = num[t] / den;
    }
    free(x); free(pq); free(pk); free(lk); free(num);
}
