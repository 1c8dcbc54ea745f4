/* Naive RoPE reference: explicit rotation matrices, double precision. See ref_rope.h. */
#include "ref_rope.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define REF_PI 3.14159265358979323846

/* HF get_mscale */
static double ref_mscale(double s, double k) { return s <= 1.0 ? 1.0 : 0.1 * k * log(s) + 1.0; }

size_t ref_rope_freqs(const rk_rope_config *cfg, double *theta, double *mscale)
{
    size_t r = cfg->rotary_dim ? cfg->rotary_dim : cfg->dim, h = r / 2;
    double base = cfg->base != 0.0 ? cfg->base : 10000.0;
    double s = cfg->factor;
    /* lengths as HF's standardize_rope_params: L defaults to M, M (ropekit) to L */
    double L = cfg->orig_ctx != 0.0 ? cfg->orig_ctx : cfg->max_pos != 0.0 ? cfg->max_pos : 4096.0;
    double M = cfg->max_pos != 0.0 ? cfg->max_pos : L;
    if (s == 0.0 && cfg->max_pos != 0.0 &&
        (cfg->scaling == RK_SCALE_YARN || cfg->scaling == RK_SCALE_LONGROPE))
        s = cfg->max_pos / L;                        /* factor absent: M / L */
    double bfast = cfg->beta_fast != 0.0 ? cfg->beta_fast : 32.0;
    double bslow = cfg->beta_slow != 0.0 ? cfg->beta_slow : 1.0;
    if (cfg->scaling == RK_SCALE_NTK)                /* bloc97: b' = b s^(r/(r-2)) */
        base = base * pow(s, (double)r / ((double)r - 2.0));
    if (cfg->scaling == RK_SCALE_DYNAMIC) {          /* _compute_dynamic_ntk_parameters */
        double l = (double)cfg->seq_len > M ? (double)cfg->seq_len : M;
        base = base * pow((s * l / M) - (s - 1.0), (double)r / ((double)r - 2.0));
    }
    /* yarn: find_correction_range over the rotary dimension, ramp over the pair index */
    double lo = 0.0, hi = 0.0;
    if (cfg->scaling == RK_SCALE_YARN) {
        lo = (double)r * log(L / (bfast * 2.0 * REF_PI)) / (2.0 * log(base));
        hi = (double)r * log(L / (bslow * 2.0 * REF_PI)) / (2.0 * log(base));
        if (!cfg->no_truncate) { lo = floor(lo); hi = ceil(hi); }
        lo = fmax(lo, 0.0);
        hi = fmin(hi, (double)r - 1.0);
        if (lo == hi) hi += 0.001;
    }
    const double *div = cfg->freq_factors;
    if (cfg->scaling == RK_SCALE_LONGROPE)
        div = (double)cfg->seq_len > L ? cfg->long_factor : cfg->short_factor;
    double lf = cfg->low_freq_factor != 0.0 ? cfg->low_freq_factor : 1.0;
    double hf = cfg->high_freq_factor != 0.0 ? cfg->high_freq_factor : 4.0;
    for (size_t i = 0; i < h; i++) {
        double inv_freq = 1.0 / pow(base, (double)(2 * i) / (double)r);
        if (div) inv_freq = 1.0 / (div[i] * pow(base, (double)(2 * i) / (double)r));
        switch (cfg->scaling) {
        case RK_SCALE_LINEAR:
            inv_freq = inv_freq / s;
            break;
        case RK_SCALE_YARN: {
            double ramp = fmin(fmax(((double)i - lo) / (hi - lo), 0.0), 1.0);
            inv_freq = inv_freq / s * ramp + inv_freq * (1.0 - ramp);
            break;
        }
        case RK_SCALE_YARN_PAPER: {
            /* YaRN paper: wavelength lambda = 2 pi / theta, ratio r = L / lambda, ramp gamma(r)
             * = 0 below alpha (beta_slow), 1 above beta (beta_fast), linear between. */
            double ratio = L / (2.0 * REF_PI / inv_freq);
            double gamma = ratio < bslow ? 0.0 : ratio > bfast ? 1.0
                         : (ratio - bslow) / (bfast - bslow);
            inv_freq = (1.0 - gamma) * inv_freq / s + gamma * inv_freq;
            break;
        }
        case RK_SCALE_LLAMA3: {
            double wavelen = 2.0 * REF_PI / inv_freq;
            if (wavelen > L / lf) {
                inv_freq = inv_freq / s;
            } else if (wavelen >= L / hf) {
                double sm = (L / wavelen - lf) / (hf - lf);
                inv_freq = (1.0 - sm) * inv_freq / s + sm * inv_freq;
            }
            break;
        }
        default:
            break;
        }
        theta[i] = cfg->freqs ? cfg->freqs[i] : inv_freq;
    }
    double m = 1.0;
    if (cfg->scaling == RK_SCALE_YARN)
        m = cfg->mscale != 0.0 && cfg->mscale_all_dim != 0.0
            ? ref_mscale(s, cfg->mscale) / ref_mscale(s, cfg->mscale_all_dim) : ref_mscale(s, 1.0);
    if (cfg->scaling == RK_SCALE_YARN_PAPER && s > 1.0) m = 0.1 * log(s) + 1.0;
    if (cfg->scaling == RK_SCALE_LONGROPE && s > 1.0) m = sqrt(1.0 + log(s) / log(L));
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
