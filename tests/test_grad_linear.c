/* Gradients of FAVOR+ (RK_PERFORMER: positive, hyperbolic, trig) and linear attention
 * (RK_LINEAR: elu+1, relu): the feature maps' backward. */
#include "grad_check.h"
#include "featmap.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <gsl/gsl_randist.h>

#define UF ((double)FLT_EPSILON)

typedef struct { rk_kind kind; rk_kernel kernel; rk_map map; const char *name; } fmap;
static const fmap MAPS[] = {
    { RK_PERFORMER, RK_KERNEL_POSITIVE, RK_MAP_ELU, "positive" },
    { RK_PERFORMER, RK_KERNEL_HYPERBOLIC, RK_MAP_ELU, "hyperbolic" },
    { RK_PERFORMER, RK_KERNEL_TRIG, RK_MAP_ELU, "trig" },
    { RK_LINEAR, RK_KERNEL_POSITIVE, RK_MAP_ELU, "elu+1" },
    { RK_LINEAR, RK_KERNEL_POSITIVE, RK_MAP_RELU, "relu" },
};
#define NMAPS (sizeof MAPS / sizeof MAPS[0])
/* ---- the feature maps' backward (featmap.h) ----------------------------------------------------- */

/* dL/dx of L = dphi . phi_c(x) with the constant c held fixed, for every map, against central
 * differences (h = cbrt(u_d) max(1, |x|): error ~ h^2 |L'''| + u_d |L| / h, both < 1e-9 here
 * for |x| < 3, so 1e-8 of the scale); the float rows against the double ones (sums of m terms
 * of float products and the operands' own rounding: 8 (m + d) u_f of the scale). */
static void test_featmap_backward(void **state)
{
    (void)state;
    const size_t d = 5, m = 7;
    for (size_t f = 0; f < NMAPS; f++) {
        rk_attn_config c;
        memset(&c, 0, sizeof c);
        c.kind = MAPS[f].kind;
        c.n_q = c.n_kv = 1;
        c.d = d;
        c.seed = 3;
        c.kernel = MAPS[f].kernel;
        c.map = MAPS[f].map;
        const int favor = MAPS[f].kind == RK_PERFORMER;
        if (favor) {
            c.n_features = m;
            c.scale = 0.6;
        }
        size_t F = 0, bytes = 0;
        assert_rk_ok(rk__featmap_resolve(&c, favor, "test", &F));
        rk__featmap fm;
        assert_rk_ok(rk__featmap_init(&fm, &c, favor, 1, 0, &bytes, "test"));
        assert_rk_ok(rk__featmap_init_grad(&fm, &bytes, "test"));
        gsl_rng *r = rk_test_rng(70 + f);
        double x[8], u[8], phi[16], dphi[16], t[8], dx[8];
        float xf[8], phif[16], dphif[16], tf[8];
        const double cst = favor ? 0.25 : 0.0;
        for (int trial = 0; trial < 4; trial++) {
            for (size_t i = 0; i < d; i++) x[i] = (double)(float)(0.9 * gsl_ran_gaussian_ziggurat(r, 1.0));
            for (size_t i = 0; i < F; i++) dphi[i] = (double)(float)gsl_ran_gaussian_ziggurat(r, 1.0);
            double h0;
            (void)rk__featmap_project_d(&fm, x, u, &h0);
            rk__featmap_row_d(&fm, u, h0, cst, phi);
            double s = rk__featmap_bwd_row_d(&fm, x, phi, dphi, t), scale = 1.0;
            for (size_t i = 0; i < d; i++) {
                dx[i] = favor ? s * x[i] : t[i];
                if (favor)
                    for (size_t k = 0; k < m; k++) dx[i] += fm.wsd[k * d + i] * t[k];
                scale = fmax(scale, fabs(dx[i]));
            }
            for (size_t i = 0; i < d; i++) {
                double x0 = x[i], hh = cbrt(DBL_EPSILON) * fmax(1.0, fabs(x0)), L[2];
                for (int sg = 0; sg < 2; sg++) {
                    x[i] = x0 + (sg ? -hh : hh);
                    double hx, ph[16];
                    (void)rk__featmap_project_d(&fm, x, u, &hx);
                    rk__featmap_row_d(&fm, u, hx, cst, ph);
                    L[sg] = 0.0;
                    for (size_t k = 0; k < F; k++) L[sg] += dphi[k] * ph[k];
                }
                x[i] = x0;
                double fd = (L[0] - L[1]) / (2.0 * hh);
                if (fabs(fd - dx[i]) > 1e-8 * scale)
                    fail_msg("%s: dx[%zu] = %.17g, central difference %.17g", MAPS[f].name, i, dx[i], fd);
            }
            /* float: the same row through the float backward */
            for (size_t i = 0; i < d; i++) xf[i] = (float)x[i];
            for (size_t i = 0; i < F; i++) { phif[i] = (float)phi[i]; dphif[i] = (float)dphi[i]; }
            double sf = rk__featmap_bwd_row_f(&fm, xf, phif, dphif, tf);
            for (size_t i = 0; i < d; i++) {
                double a = favor ? sf * (double)xf[i] : (double)tf[i];
                if (favor)
                    for (size_t k = 0; k < m; k++) a += (double)fm.wsf[k * d + i] * (double)tf[k];
                if (fabs(a - dx[i]) > 8.0 * (double)(m + d) * UF * scale)
                    fail_msg("%s: float dx[%zu] = %.9g, double %.17g", MAPS[f].name, i, a, dx[i]);
            }
        }
        gsl_rng_free(r);
        rk__featmap_free(&fm);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_featmap_backward),
    };
    return cmocka_run_group_tests_name("grad_linear", tests, NULL, NULL);
}
