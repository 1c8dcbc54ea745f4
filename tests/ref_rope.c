/* Naive RoPE reference: explicit rotation matrices, double precision. See ref_rope.h. */
#include "ref_rope.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define REF_PI 3.14159265358979323846

size_t ref_rope_freqs(const rk_rope_config *cfg, double *theta, double *mscale)
{
    size_t r = cfg->rotary_dim ? cfg->rotary_dim : cfg->dim;
    double base = cfg->base != 0.0 ? cfg->base : 10000.0;
    double s = cfg->factor;
    if (cfg->scaling == RK_SCALE_NTK)                /* bloc97: b' = b s^(r/(r-2)) */
        base = base * pow(s, (double)r / ((double)r - 2.0));
    for (size_t i = 0; i < r / 2; i++) {
        double inv_freq = 1.0 / pow(base, (double)(2 * i) / (double)r);
        if (cfg->scaling == RK_SCALE_LINEAR) inv_freq = inv_freq / s;
        if (cfg->scaling == RK_SCALE_YARN) {
            /* YaRN paper: wavelength lambda = 2 pi / theta, ratio r = L / lambda, ramp gamma(r)
             * = 0 below alpha (beta_slow), 1 above beta (beta_fast), linear between. */
            double L = cfg->orig_ctx != 0.0 ? cfg->orig_ctx : 4096.0;
            double alpha = cfg->beta_slow != 0.0 ? cfg->beta_slow : 1.0;
            double beta = cfg->beta_fast != 0.0 ? cfg->beta_fast : 32.0;
            double lambda = 2.0 * REF_PI / inv_freq;
            double ratio = L / lambda;
            double gamma = ratio < alpha ? 0.0 : ratio > beta ? 1.0 : (ratio - alpha) / (beta - alpha);
            inv_freq = (1.0 - gamma) * inv_freq / s + gamma * inv_freq;
        }
        theta[i] = inv_freq;
    }
    double m = 1.0;
    if (cfg->scaling == RK_SCALE_YARN && s > 1.0) m = 0.1 * log(s) + 1.0;
    if (cfg->attn_factor != 0.0) m = cfg->attn_factor;
    *mscale = m;
    return r;
}

void ref_rope_matrix(const rk_rope_config *cfg, double pos, int inverse, double *R)
{
    size_t d = cfg->dim;
    size_t r = cfg->rotary_dim ? cfg->rotary_dim : d;
    double *theta = malloc((r / 2 + 1) * sizeof *theta);
    double m;
    ref_rope_freqs(cfg, theta, &m);
    memset(R, 0, d * d * sizeof *R);
    for (size_t j = 0; j < d; j++) R[j * d + j] = 1.0;
    for (size_t i = 0; i < r / 2; i++) {
        /* pair (p, q): interleaved (2i, 2i+1) or half-split (i, i + r/2) */
        size_t p = cfg->style == RK_ROPE_HALF ? i : 2 * i;
        size_t q = cfg->style == RK_ROPE_HALF ? i + r / 2 : 2 * i + 1;
        double c = cos(pos * theta[i]), s = sin(pos * theta[i]);
        if (!inverse) {        /* m [[c, -s], [s, c]] */
            R[p * d + p] = m * c;  R[p * d + q] = -m * s;
            R[q * d + p] = m * s;  R[q * d + q] = m * c;
        } else {               /* [[c, s], [-s, c]] / m */
            R[p * d + p] = c / m;  R[p * d + q] = s / m;
            R[q * d + p] = -s / m; R[q * d + q] = c / m;
        }
    }
    free(theta);
}

void ref_rope_apply(const rk_rope_config *cfg, const rk_matd *in, rk_matd *out, int64_t pos0,
                    const int64_t *pos, int inverse)
{
    size_t d = cfg->dim, heads = in->cols / d;
    double *R = malloc(d * d * sizeof *R);
    for (size_t t = 0; t < in->rows; t++) {
        double p = pos ? (double)pos[t] : (double)pos0 + (double)t;
        ref_rope_matrix(cfg, p, inverse, R);
        for (size_t hd = 0; hd < heads; hd++) {
            const double *x = in->data + t * in->ld + hd * d;
            double *y = out->data + t * out->ld + hd * d;
            for (size_t j = 0; j < d; j++) {
                double acc = 0.0;
                for (size_t k = 0; k < d; k++) acc += R[j * d + k] * x[k];
                y[j] = acc;
            }
        }
    }
    free(R);
}
