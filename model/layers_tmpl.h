/* The layers of the language model in one precision (included by model/layers.c twice):
 *   REAL    float or double
 *   S(f)    the name with the precision suffix (f##_f, f##_d)
 *   GEMM    rk__gemm_f / rk__gemm_d
 *   EXPR, LOGR, TANHR, SQRTR  the precision's math functions
 * Shapes first, then the passes; every loop over rows is split between threads (one row is one
 * thread's), every sum over rows runs in row order: the same bits for any thread count. Sums
 * inside a row (LayerNorm statistics, softmax normaliser) are taken in double. */

void S(lm_linear_fwd)(int nt, size_t N, size_t C, size_t OC, const REAL *x, const REAL *w,
                      const REAL *b, REAL *y, REAL *wt)
{
    /* wt (C, OC) = W^T, so the product is row-major on both sides: y = x wt */
    for (size_t o = 0; o < OC; o++)
        for (size_t c = 0; c < C; c++) wt[c * OC + o] = w[o * C + c];
    GEMM(lm__isa(), nt, N, OC, C, x, C, 1, wt, OC, y, OC);
    if (!b) return;
    #pragma omp parallel for schedule(static) num_threads(nt) if (N * OC > LM_PAR_MIN)
    for (size_t i = 0; i < N; i++) {
        REAL *y_i = y + i * OC;
        for (size_t o = 0; o < OC; o++) y_i[o] += b[o];
    }
}

void S(lm_linear_bwd)(int nt, size_t N, size_t C, size_t OC, const REAL *x, const REAL *w,
                      const REAL *dy, REAL *dx, REAL *dw, REAL *db)
{
    /* dx (N, C) = dy (N, OC) W (OC, C) */
    if (dx) GEMM(lm__isa(), nt, N, C, OC, dy, OC, 1, w, C, dx, C);
    /* dw (OC, C) = dy^T (OC, N) x (N, C): A(o, i) = dy[i OC + o] */
    GEMM(lm__isa(), nt, OC, C, N, dy, 1, OC, x, C, dw, C);
    if (!db) return;
    /* db[o] = sum_i dy[i, o], in row order, in double; threads split the columns */
    #pragma omp parallel for schedule(static) num_threads(nt) if (N * OC > LM_PAR_MIN)
    for (size_t o0 = 0; o0 < OC; o0 += LM_COLS) {
        size_t o1 = o0 + LM_COLS < OC ? o0 + LM_COLS : OC;
        double acc[LM_COLS] = { 0 };
        for (size_t i = 0; i < N; i++)
            for (size_t o = o0; o < o1; o++) acc[o - o0] += (double)dy[i * OC + o];
        for (size_t o = o0; o < o1; o++) db[o] = (REAL)acc[o - o0];
    }
}

void S(lm_layernorm_fwd)(int nt, size_t N, size_t C, const REAL *x, const REAL *w,
                         const REAL *b, REAL *y, REAL *mean, REAL *rstd)
{
    #pragma omp parallel for schedule(static) num_threads(nt) if (N * C > LM_PAR_MIN)
    for (size_t i = 0; i < N; i++) {
        const REAL *x_i = x + i * C;
        REAL *y_i = y + i * C;
        double m = 0.0, v = 0.0;
        for (size_t c = 0; c < C; c++) m += (double)x_i[c];
        m /= (double)C;
        for (size_t c = 0; c < C; c++) {
            double t = (double)x_i[c] - m;
            v += t * t;
        }
        v /= (double)C;
        double s = 1.0 / sqrt(v + LM_LN_EPS);
        for (size_t c = 0; c < C; c++)
            y_i[c] = (REAL)(((double)x_i[c] - m) * s) * w[c] + b[c];
        mean[i] = (REAL)m;
        rstd[i] = (REAL)s;
    }
}

/* With xhat = (x - mean) rstd, y = xhat w + b:
 *   dw = sum_i dy xhat,  db = sum_i dy,
 *   dx = rstd (g - mean_c(g) - xhat mean_c(g xhat)),  g = dy w  (per row). */
void S(lm_layernorm_bwd)(int nt, size_t N, size_t C, const REAL *x, const REAL *w,
                         const REAL *mean, const REAL *rstd, const REAL *dy, REAL *dx,
                         REAL *dw, REAL *db)
{
    #pragma omp parallel for schedule(static) num_threads(nt) if (N * C > LM_PAR_MIN)
    for (size_t i = 0; i < N; i++) {
        const REAL *x_i = x + i * C, *dy_i = dy + i * C;
        REAL *dx_i = dx + i * C;
        const REAL m = mean[i], s = rstd[i];
        double g_mean = 0.0, gx_mean = 0.0;
        for (size_t c = 0; c < C; c++) {
            REAL xh = (x_i[c] - m) * s, g = dy_i[c] * w[c];
            g_mean += (double)g;
            gx_mean += (double)g * (double)xh;
        }
        g_mean /= (double)C;
        gx_mean /= (double)C;
        for (size_t c = 0; c < C; c++) {
            REAL xh = (x_i[c] - m) * s, g = dy_i[c] * w[c];
            dx_i[c] += (REAL)((double)s * ((double)g - g_mean - (double)xh * gx_mean));
        }
    }
    #pragma omp parallel for schedule(static) num_threads(nt) if (N * C > LM_PAR_MIN)
    for (size_t c0 = 0; c0 < C; c0 += LM_COLS) {
        size_t c1 = c0 + LM_COLS < C ? c0 + LM_COLS : C;
        double aw[LM_COLS] = { 0 }, ab[LM_COLS] = { 0 };
        for (size_t i = 0; i < N; i++) {
            const REAL *x_i = x + i * C, *dy_i = dy + i * C;
            for (size_t c = c0; c < c1; c++) {
                REAL xh = (x_i[c] - mean[i]) * rstd[i];
                aw[c - c0] += (double)dy_i[c] * (double)xh;
                ab[c - c0] += (double)dy_i[c];
            }
        }
        for (size_t c = c0; c < c1; c++) {
            dw[c] = (REAL)aw[c - c0];
            db[c] = (REAL)ab[c - c0];
        }
    }
}

/* gelu(x) = x/2 (1 + tanh(u)) = x sigma(2u), u = sqrt(2/pi) (x + 0.044715 x^3) (GPT-2's tanh
 * form, through the identity (1 + tanh u)/2 = 1/(1 + e^(-2u)): one exp per element);
 * gelu'(x) = s + x s (1 - s) 2 sqrt(2/pi) (1 + 3 0.044715 x^2), s = sigma(2u). The forward keeps
 * gelu'(x) (in dydx, which may be x itself) so the backward is one product. */
void S(lm_gelu_fwd)(int nt, size_t n, const REAL *x, REAL *y, REAL *dydx)
{
    const REAL k2 = (REAL)(2.0 * 0.7978845608028654), a = (REAL)0.044715;
    #pragma omp parallel for schedule(static) num_threads(nt) if (n > LM_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        const REAL v = x[i], sg = (REAL)1 / ((REAL)1 + EXPR(-k2 * (v + a * v * v * v)));
        y[i] = v * sg;
        if (dydx) dydx[i] = sg + v * sg * ((REAL)1 - sg) * k2 * ((REAL)1 + (REAL)3 * a * v * v);
    }
}

void S(lm_gelu_bwd)(int nt, size_t n, const REAL *dydx, const REAL *dy, REAL *dx)
{
    #pragma omp parallel for schedule(static) num_threads(nt) if (n > LM_PAR_MIN)
    for (size_t i = 0; i < n; i++) dx[i] = dy[i] * dydx[i];
}

void S(lm_embed_fwd)(int nt, size_t B, size_t T, size_t C, const int32_t *tok,
                     const REAL *wte, const REAL *pos, REAL *out)
{
    #pragma omp parallel for schedule(static) num_threads(nt) if (B * T * C > LM_PAR_MIN)
    for (size_t bt = 0; bt < B * T; bt++) {
        const REAL *e = wte + (size_t)tok[bt] * C;
        REAL *o = out + bt * C;
        if (pos) {
            const REAL *p = pos + (bt % T) * C;
            for (size_t c = 0; c < C; c++) o[c] = e[c] + p[c];
        } else {
            for (size_t c = 0; c < C; c++) o[c] = e[c];
        }
    }
}

void S(lm_embed_bwd)(int nt, size_t B, size_t T, size_t C, size_t V, const int32_t *tok,
                     const REAL *dout, REAL *dwte, REAL *dpos)
{
    for (size_t i = 0; i < V * C; i++) dwte[i] = 0;
    /* threads split the channels; each adds the rows in token order */
    #pragma omp parallel for schedule(static) num_threads(nt) if (B * T * C > LM_PAR_MIN)
    for (size_t c0 = 0; c0 < C; c0 += LM_COLS) {
        size_t c1 = c0 + LM_COLS < C ? c0 + LM_COLS : C;
        for (size_t bt = 0; bt < B * T; bt++) {
            REAL *g = dwte + (size_t)tok[bt] * C;
            const REAL *d = dout + bt * C;
            for (size_t c = c0; c < c1; c++) g[c] += d[c];
        }
        if (!dpos) continue;
        for (size_t t = 0; t < T; t++)
            for (size_t c = c0; c < c1; c++) {
                double acc = 0.0;
                for (size_t b = 0; b < B; b++) acc += (double)dout[(b * T + t) * C + c];
                dpos[t * C + c] = (REAL)acc;
            }
    }
}

size_t S(lm_xent_fwd)(int nt, size_t N, size_t V, REAL *probs, const int32_t *targets,
                      double *nll, size_t *count)
{
    size_t correct = 0, counted = 0;
    #pragma omp parallel for schedule(static) num_threads(nt) if (N * V > LM_PAR_MIN) \
        reduction(+ : correct, counted)
    for (size_t i = 0; i < N; i++) {
        REAL *p = probs + i * V;
        size_t arg = 0;
        for (size_t v = 1; v < V; v++)
            if (p[v] > p[arg]) arg = v;
        const REAL mx = p[arg];
        const int32_t tg = targets[i];
        double z = 0.0, lt = 0.0;
        for (size_t v = 0; v < V; v++) {
            REAL e = EXPR(p[v] - mx);
            if ((int32_t)v == tg) lt = (double)(p[v] - mx);
            z += (double)e;
            p[v] = e;
        }
        const REAL inv = (REAL)(1.0 / z);
        for (size_t v = 0; v < V; v++) p[v] *= inv;
        if (tg >= 0) {
            nll[i] = log(z) - lt;
            counted++;
            correct += arg == (size_t)tg;
        } else {
            nll[i] = 0.0;
        }
    }
    *count = counted;
    return correct;
}

void S(lm_xent_bwd)(int nt, size_t N, size_t V, REAL *probs, const int32_t *targets,
                    double scale)
{
    const REAL sc = (REAL)scale;
    #pragma omp parallel for schedule(static) num_threads(nt) if (N * V > LM_PAR_MIN)
    for (size_t i = 0; i < N; i++) {
        REAL *p = probs + i * V;
        const int32_t tg = targets[i];
        if (tg < 0) {
            for (size_t v = 0; v < V; v++) p[v] = 0;
            continue;
        }
        for (size_t v = 0; v < V; v++) p[v] *= sc;
        p[tg] -= sc;
    }
}
