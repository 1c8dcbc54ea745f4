/* The public feature-map API of a plan (for kinds whose description gives access to their
 * feature map: RK_PERFORMER, RK_LINEAR): feature width, features of given rows, the FAVOR+
 * projection, and moving projections to and from NumPy. */
#include "attn_impl.h"
#include "featmap.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* The plan's feature map, or NULL (also for a NULL plan). */
static rk__featmap *featmap_of(const rk_attn *p, const rk_rope **qk, const rk_rope **feat)
{
    if (!p || !p->ops->featmap) return NULL;
    return p->ops->featmap(p, qk, feat);
}

size_t rk_attn_feature_dim(const rk_attn *p)
{
    const rk__featmap *f = featmap_of(p, NULL, NULL);
    return f ? f->F : 0;
}

const float *rk_attn_proj(const rk_attn *p, size_t *m, size_t *d)
{
    const rk__featmap *f = featmap_of(p, NULL, NULL);
    if (!f || !f->m) {
        if (m) *m = 0;
        if (d) *d = 0;
        return NULL;
    }
    if (m) *m = f->m;
    if (d) *d = f->d;
    return f->w;
}

int rk_attn_features_d(rk_attn *p, const rk_matd *x, const int64_t *pos, rk_matd *phi)
{
    rk__clear_error();
    if (!p || !x || !phi) RK_FAIL(RK_EINVAL, "features: NULL argument");
    const rk_rope *rope_qk = NULL, *rope_f = NULL;
    rk__featmap *f = featmap_of(p, &rope_qk, &rope_f);
    if (!f) RK_FAIL(RK_EUNSUP, "features: a %s plan has no feature map", p->ops->name);
    int rc = rk__check_view("x", x->data, x->rows, x->cols, x->ld, x->rows, f->d);
    if (!rc) rc = rk__check_view("phi", phi->data, phi->rows, phi->cols, phi->ld, x->rows, f->F);
    if (rc) return rc;
    for (size_t t = 0; t < x->rows; t++) {
        const double *x_t = x->data + t * x->ld;
        double *phi_t = phi->data + t * phi->ld;
        if (pos && rope_qk) {
            /* phi(R_pos x) */
            rk_matd xi = rk_matd_view((double *)x_t, 1, f->d, f->d);
            rk_matd xo = rk_matd_view(f->xs, 1, f->d, f->d);
            if ((rc = rk_rope_apply_d(rope_qk, &xi, &xo, pos[t], NULL, 0))) return rc;
            x_t = f->xs;
        }
        rk__featmap_plain_d(f, x_t, f->us, phi_t);
        if (pos && rope_f) {
            /* R_pos phi(x) */
            rk_matd pv = rk_matd_view(phi_t, 1, f->F, f->F);
            if ((rc = rk_rope_apply_d(rope_f, &pv, &pv, pos[t], NULL, 0))) return rc;
        }
    }
    return RK_OK;
}

int rk_attn_proj_save(const rk_attn *p, const char *path)
{
    rk__clear_error();
    if (!p || !path) RK_FAIL(RK_EINVAL, "proj save: NULL argument");
    const rk__featmap *f = featmap_of(p, NULL, NULL);
    if (!f || !f->m) RK_FAIL(RK_EUNSUP, "proj save: a %s plan has no random projection",
                             p->ops->name);
    rk_array a = { .dtype = RK_F32, .ndim = 2, .shape = { f->m, f->d }, .count = f->m * f->d,
                   .data = f->w };
    return rk_npy_save(path, &a);
}

int rk_attn_proj_load(const char *path, size_t d, rk_mat *w)
{
    rk__clear_error();
    if (!path || !w) RK_FAIL(RK_EINVAL, "proj load: NULL argument");
    *w = (rk_mat){ 0 };
    rk_array a = { 0 };
    int rc = rk_npy_load(path, &a);
    if (rc) return rc;
    if (a.ndim != 2 || a.shape[1] != d || a.shape[0] == 0) {
        char shape[64] = "";
        for (int i = 0, n = 0; i < a.ndim && n < (int)sizeof shape; i++)
            n += snprintf(shape + n, sizeof shape - (size_t)n, i ? " x %zu" : "%zu", a.shape[i]);
        rc = rk__fail(RK_EDIM, "proj load: %s has shape (%s); a projection must be (m, d) with "
                      "m > 0 and d = %zu", path, a.ndim ? shape : "scalar", d);
        goto done;
    }
    if ((rc = rk_array_check_finite(&a, path))) goto done;
    if ((rc = rk_mat_alloc(w, a.shape[0], d))) goto done;
    for (size_t i = 0; i < a.count; i++) {
        double val = a.dtype == RK_F64 ? ((const double *)a.data)[i] : ((const float *)a.data)[i];
        w->data[i] = (float)val;
        if (!isfinite(w->data[i])) {
            rk_mat_free(w);
            rc = rk__fail(RK_ENONFINITE, "proj load: %s[%zu][%zu] = %g overflows float32", path,
                          i / d, i % d, val);
            goto done;
        }
    }
done:
    rk_array_free(&a);
    return rc;
}
