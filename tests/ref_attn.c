/* Naive softmax attention in double: rotate, full score matrix, row softmax, times V. */
#include "ref_attn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ref_attn_rotate(double *x, size_t d, const ref_attn_rope *rope, double pos)
{
    size_t r = rope->rotary_dim ? rope->rotary_dim : d, half = r / 2;
    double base = rope->base != 0.0 ? rope->base : 10000.0;
    for (size_t i = 0; i < half; i++) {
        double theta = pow(base, -2.0 * (double)i / (double)r);
        double cs = cos(pos * theta), sn = sin(pos * theta);
        size_t ia = rope->style == RK_ROPE_HALF ? i : 2 * i;
        size_t ib = rope->style == RK_ROPE_HALF ? i + half : 2 * i + 1;
        double a = x[ia], b = x[ib];
        x[ia] = a * cs - b * sn;
        x[ib] = a * sn + b * cs;
    }
}

/* The xPos score of rotated q (at qp) and k (at kp): pairs scaled by zeta_i^((qp - kp)/B). */
static double xpos_dot(const double *q, const double *k, size_t d, const ref_attn_rope *rope,
                       const ref_attn_xpos *xp, double qp, double kp)
{
    size_t r = rope->rotary_dim ? rope->rotary_dim : d, half = r / 2;
    double gamma = xp->gamma != 0.0 ? xp->gamma : 0.4, dot = 0.0;
    for (size_t i = 0; i < half; i++) {
        size_t ia = rope->style == RK_ROPE_HALF ? i : 2 * i;
        size_t ib = rope->style == RK_ROPE_HALF ? i + half : 2 * i + 1;
        double zeta = (2.0 * (double)i / (double)r + gamma) / (1.0 + gamma);
        dot += pow(zeta, (qp - kp) / xp->scale_base) * (q[ia] * k[ia] + q[ib] * k[ib]);
    }
    for (size_t c = r; c < d; c++) dot += q[c] * k[c];
    return dot;
}

void ref_softmax_attention(const rk_matd *q, const rk_matd *k, const rk_matd *v, rk_matd *out,
                           double scale, int causal, size_t kv_len, const ref_attn_rope *rope)
{
    ref_softmax_attention_ex(q, k, v, out, scale, causal, kv_len, rope, NULL, NULL);
}

void ref_softmax_attention_ex(const rk_matd *q, const rk_matd *k, const rk_matd *v, rk_matd *out,
                              double scale, int causal, size_t kv_len, const ref_attn_rope *rope,
                              const double *bias, const ref_attn_xpos *xpos)
{
    size_t n_q = q->rows, n_kv = k->rows, d = q->cols, dv = v->cols;
    if (kv_len == RK_ALL_KEYS) kv_len = n_kv;
    double *qr = calloc(n_q * d + 1, sizeof *qr), *kr = calloc(n_kv * d + 1, sizeof *kr);
    double *s = calloc(n_q * n_kv + 1, sizeof *s);
    if (!qr || !kr || !s) abort();

    // 1. (rotated) copies; positions are absolute, queries are the last n_q of them
    for (size_t i = 0; i < n_q; i++) {
        memcpy(qr + i * d, q->data + i * q->ld, d * sizeof *qr);
        if (rope) ref_attn_rotate(qr + i * d, d, rope,
                                  (double)(rope->pos_offset + (int64_t)n_kv - (int64_t)n_q + (int64_t)i));
    }
    for (size_t j = 0; j < n_kv; j++) {
        memcpy(kr + j * d, k->data + j * k->ld, d * sizeof *kr);
        if (rope) ref_attn_rotate(kr + j * d, d, rope, (double)(rope->pos_offset + (int64_t)j));
    }

    // 2. the whole score matrix, -inf where masked; plus the bias of offset j - i - (n_kv - n_q)
    for (size_t i = 0; i < n_q; i++)
        for (size_t j = 0; j < n_kv; j++) {
            int seen = j < kv_len && (!causal || (double)j <= (double)i + (double)n_kv - (double)n_q);
            double dot = 0.0;
            if (xpos) {
                double qp = (double)(rope->pos_offset + (int64_t)n_kv - (int64_t)n_q + (int64_t)i);
                double kp = (double)(rope->pos_offset + (int64_t)j);
                dot = xpos_dot(qr + i * d, kr + j * d, d, rope, xpos, qp, kp);
            } else {
                for (size_t c = 0; c < d; c++) dot += qr[i * d + c] * kr[j * d + c];
            }
            double b = bias ? bias[j + n_q - 1 - i] : 0.0;
            s[i * n_kv + j] = seen ? scale * dot + b : -INFINITY;
        }

    // 3. row softmax, 4. times V
    for (size_t i = 0; i < n_q; i++) {
        double *s_i = s + i * n_kv, mx = -INFINITY, sum = 0.0;
        for (size_t j = 0; j < n_kv; j++) if (s_i[j] > mx) mx = s_i[j];
        for (size_t j = 0; j < n_kv; j++) {
            s_i[j] = mx == -INFINITY ? 0.0 : exp(s_i[j] - mx);
            sum += s_i[j];
        }
        double *out_i = out->data + i * out->ld;
        for (size_t c = 0; c < dv; c++) {
            double acc = 0.0;
            for (size_t j = 0; j < n_kv; j++)
                if (s_i[j] != 0.0) acc += s_i[j] * v->data[j * v->ld + c];
            out_i[c] = sum > 0.0 ? acc / sum : 0.0;
        }
    }
    free(qr);
    free(kr);
    free(s);
}
