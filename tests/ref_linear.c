#include "ref_linear.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

size_t ref_linear_width(const ref_linear_cfg *c, size_t d)
{
    if (c->kind == RK_LINEAR) return d;
    return c->kernel == RK_KERNEL_POSITIVE ? c->m : 2 * c->m;
}

/* u_r = w_r . x', h = |x'|^2 / 2 */
static double project(const ref_linear_cfg *c, const double *x, size_t d, double *u)
{
    double s = sqrt(c->scale), h = 0.0;
    for (size_t i = 0; i < d; i++) h += (s * x[i]) * (s * x[i]);
    for (size_t r = 0; r < c->m; r++) {
        double a = 0.0;
        for (size_t i = 0; i < d; i++) a += c->w[r * d + i] * (s * x[i]);
        u[r] = a;
    }
    return h / 2;
}

double ref_linear_lmax(const ref_linear_cfg *c, const double *x, size_t d)
{
    if (c->kind == RK_LINEAR) return 0.0;
    double *u = malloc(c->m * sizeof *u), h = project(c, x, d, u), mx = -INFINITY;
    for (size_t r = 0; r < c->m; r++) {
        double a = c->kernel == RK_KERNEL_HYPERBOLIC ? fabs(u[r]) : u[r];
        if (a > mx) mx = a;
    }
    free(u);
    return c->kernel == RK_KERNEL_TRIG ? h : mx - h;
}

void ref_linear_phi(const ref_linear_cfg *c, const double *x, size_t d, double shift, double *phi)
{
    if (c->kind == RK_LINEAR) {
        for (size_t i = 0; i < d; i++)
            phi[i] = c->map == RK_MAP_ELU ? (x[i] > 0 ? x[i] + 1 : exp(x[i]) - 1 + 1)
                                          : (x[i] > 0 ? x[i] : 0);
        return;
    }
    size_t m = c->m;
    double *u = malloc(m * sizeof *u), h = project(c, x, d, u);
    for (size_t r = 0; r < m; r++) {
        switch (c->kernel) {
        case RK_KERNEL_POSITIVE:   /* exp(w.x' - |x'|^2/2) / sqrt(m) */
            phi[r] = exp(u[r] - h - shift) / sqrt((double)m);
            break;
        case RK_KERNEL_HYPERBOLIC: /* exp(-|x'|^2/2) (e^{w.x'}, e^{-w.x'}) / sqrt(2m) */
            phi[r] = exp(u[r] - h - shift) / sqrt(2.0 * m);
            phi[m + r] = exp(-u[r] - h - shift) / sqrt(2.0 * m);
            break;
        case RK_KERNEL_TRIG:       /* exp(|x'|^2/2) (sin w.x', cos w.x') / sqrt(m) */
            phi[r] = exp(h - shift) * sin(u[r]) / sqrt((double)m);
            phi[m + r] = exp(h - shift) * cos(u[r]) / sqrt((double)m);
            break;
        }
    }
    free(u);
}

void ref_linear_rotate(const ref_linear_cfg *c, double *x, size_t n, double pos)
{
    size_t r = c->rotary_dim ? c->rotary_dim : n, fd = c->freq_dim ? c->freq_dim : r;
    double base = c->base ? c->base : 10000.0;
    for (size_t t = 0; t < r / 2; t++) {
        double th = pow(base, -2.0 * (double)t / (double)fd), a = pos * th;
        size_t i = c->style == RK_ROPE_HALF ? t : 2 * t, j = c->style == RK_ROPE_HALF ? t + r / 2 : 2 * t + 1;
        double x0 = x[i], x1 = x[j];
        x[i] = x0 * cos(a) - x1 * sin(a);
        x[j] = x0 * sin(a) + x1 * cos(a);
    }
}

void ref_linear_attention(const ref_linear_cfg *c, const rk_matd *q, const rk_matd *k,
                          const rk_matd *v, rk_matd *out, size_t kv_len)
{
    size_t nq = q->rows, nkv = k->rows, d = q->cols, dv = v->cols, F = ref_linear_width(c, d);
    if (kv_len > nkv) kv_len = nkv;
    double *qx = malloc(d * sizeof(double)), *kx = malloc(d * sizeof(double));
    double *pq = malloc(F * sizeof(double)), *pqr = malloc(F * sizeof(double));
    double *pk = malloc(F * sizeof(double)), *pkr = malloc(F * sizeof(double));
    double *num = malloc(dv * sizeof(double));
    for (size_t i = 0; i < nq; i++) {
        /* keys j < L: causal bottom-right, then the padding */
        int64_t last = (int64_t)i + (int64_t)nkv - (int64_t)nq;   /* sees j <= last */
        size_t L = kv_len;
        if (c->causal) L = last < 0 ? 0 : ((size_t)last + 1 < L ? (size_t)last + 1 : L);
        double qp = (double)(c->pos_offset + last);
        double *o = out->data + i * out->ld;
        for (size_t t = 0; t < dv; t++) o[t] = 0.0;
        if (L == 0) continue;
        memcpy(qx, q->data + i * q->ld, d * sizeof(double));
        if (c->rope == RK_ROPE_QK) ref_linear_rotate(c, qx, d, qp);
        ref_linear_phi(c, qx, d, ref_linear_lmax(c, qx, d), pq);
        memcpy(pqr, pq, F * sizeof(double));
        if (c->rope == RK_ROPE_FEATURES) ref_linear_rotate(c, pqr, F, qp);
        /* one constant for all keys this query sees */
        double ck = -INFINITY;
        for (size_t j = 0; j < L; j++) {
            memcpy(kx, k->data + j * k->ld, d * sizeof(double));
            if (c->rope == RK_ROPE_QK) ref_linear_rotate(c, kx, d, (double)(c->pos_offset + (int64_t)j));
            double l = ref_linear_lmax(c, kx, d);
            if (l > ck) ck = l;
        }
        double den = 0.0;
        for (size_t t = 0; t < dv; t++) num[t] = 0.0;
        for (size_t j = 0; j < L; j++) {
            double kp = (double)(c->pos_offset + (int64_t)j);
            memcpy(kx, k->data + j * k->ld, d * sizeof(double));
            if (c->rope == RK_ROPE_QK) ref_linear_rotate(c, kx, d, kp);
            ref_linear_phi(c, kx, d, ck, pk);
            memcpy(pkr, pk, F * sizeof(double));
            if (c->rope == RK_ROPE_FEATURES) ref_linear_rotate(c, pkr, F, kp);
            double wd = 0.0, wn = 0.0;
            for (size_t r = 0; r < F; r++) { wd += pq[r] * pk[r]; wn += pqr[r] * pkr[r]; }
            den += wd;
            for (size_t t = 0; t < dv; t++) num[t] += wn * v->data[j * v->ld + t];
        }
        if (den != 0.0)
            for (size_t t = 0; t < dv; t++) o[t] = num[t] / den;
    }
    free(qx); free(kx); free(pq); free(pqr); free(pk); free(pkr); free(num);
}
