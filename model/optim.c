/* AdamW with a warmup + cosine schedule and global-norm clipping (see lm.h). Elementwise updates
 * are split between threads (one element, one thread); the norm sums fixed chunks in order. */
#include "lm_internal.h"

#include <math.h>

#define NORM_CHUNK 4096   /* elements per partial sum of the gradient norm */

double lm_lr_at(const lm_adamw_config *c, size_t t)
{
    if (t == 0) t = 1;
    if (c->warmup && t <= c->warmup) return c->lr * (double)t / (double)c->warmup;
    if (c->steps <= c->warmup) return c->lr;
    double p = (double)(t - c->warmup) / (double)(c->steps - c->warmup);
    if (p > 1.0) p = 1.0;
    return c->min_lr + (c->lr - c->min_lr) * 0.5 * (1.0 + cos(RK_PI * p));
}

double lm_grad_norm(int nt, const float *g, size_t n)
{
    const size_t nchunks = (n + NORM_CHUNK - 1) / NORM_CHUNK;
    double total = 0.0;
    /* partial sums per chunk (fixed boundaries), then their sum in chunk order; ordered
     * reduction through a small fixed-size scan instead of an array allocation */
    #pragma omp parallel for schedule(static) ordered num_threads(nt) if (n > LM_PAR_MIN)
    for (size_t k = 0; k < nchunks; k++) {
        const size_t a = k * NORM_CHUNK, b = a + NORM_CHUNK < n ? a + NORM_CHUNK : n;
        double s = 0.0;
        for (size_t i = a; i < b; i++) s += (double)g[i] * (double)g[i];
        #pragma omp ordered
        total += s;
    }
    return sqrt(total);
}

double lm_adamw_step(int nt, const lm_adamw_config *c, const lm_layout *lay, size_t t,
                     float *params, const float *grads, float *m, float *v)
{
    const double norm = lm_grad_norm(nt, grads, lay->nparams);
    const double gs = c->clip > 0.0 && norm > c->clip ? c->clip / norm : 1.0;
    const double lr = lm_lr_at(c, t);
    const double bc1 = 1.0 - pow(c->beta1, (double)t), bc2 = 1.0 - pow(c->beta2, (double)t);
    const float b1 = (float)c->beta1, b2 = (float)c->beta2, g_scale = (float)gs;
    const float a = (float)(lr / bc1), rbc2 = (float)(1.0 / bc2), eps = (float)c->eps;
    for (size_t i = 0; i < lay->ntensors; i++) {
        const lm_tensor *tn = &lay->tensors[i];
        const size_t off = tn->offset, n = tn->rows * tn->cols;
        const float decay = tn->decay ? (float)(lr * c->weight_decay) : 0.0f;
        float *p = params + off, *m_ = m + off, *v_ = v + off;
        const float *g_ = grads + off;
        #pragma omp parallel for schedule(static) num_threads(nt) if (n > LM_PAR_MIN)
        for (size_t j = 0; j < n; j++) {
            const float g = g_[j] * g_scale;
            m_[j] = b1 * m_[j] + (1.0f - b1) * g;
            v_[j] = b2 * v_[j] + (1.0f - b2) * g * g;
            const float vh = v_[j] * rbc2;
            p[j] -= a * m_[j] / (sqrtf(vh) + eps) + decay * p[j];
        }
    }
    return norm;
}
