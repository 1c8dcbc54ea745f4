#!/bin/sh
# The approximation-error figures: runs `ropekit approx` into OUTDIR/approx.tsv (the summary it
# prints goes to OUTDIR/summary.txt as well), then plots/approx.gp into PNG and SVG.
#   plots/approx.sh [ropekit approx options]      (default options: --quick; not --out)
# Environment: ROPEKIT (default build/ropekit), OUTDIR (default out/approx), PLOT_ONLY=1 to
# redraw from an existing OUTDIR/approx.tsv, NORM to pick the input norm of the error-vs-m
# figures (default 1 if measured, else the first), M for the error-vs-norm figure (default the
# largest m <= 256).
# Every option of `ropekit approx` works (any subset of --variants, --kernels, --projs, one
# norm, one m, --causal, ...): a panel without data says so. The figures are written as a set
# (plots/common.sh): a failed run leaves none of them.
# Outputs in OUTDIR: approx.tsv, summary.txt, error_m, rope_m, error_norm (.png, .svg), and the
# derived fits.gp, fitlines.tsv and norm.tsv the plots read.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
rk=${ROPEKIT:-$root/build/ropekit}
out=${OUTDIR:-$root/out/approx}
tsv=$out/approx.tsv
. "$here/common.sh"
plot_begin approx "error_m rope_m error_norm"

if [ "${PLOT_ONLY:-0}" != 1 ]; then
    [ -x "$rk" ] || plot_die "$rk is not built (run make)"
    [ $# -gt 0 ] || set -- --quick
    for a in "$@"; do
        case $a in --out|--out=*) plot_die "--out is set by this script (OUTDIR=$out)" ;; esac
    done
    "$rk" approx "$@" --out "$tsv" > "$out/summary.txt" || {
        st=$?; cat "$out/summary.txt"; exit $st; }
    cat "$out/summary.txt"
fi
[ -s "$tsv" ] || plot_die "no table $tsv"

# From the table: lists, the chosen norm and m, legend titles with the fitted slopes
# (fits.gp) and the fitted lines' end points (fitlines.tsv: variant kernel proj norm what m e).
awk -F'\t' -v fits="$stage/fits.gp" -v lines="$stage/fitlines.tsv" -v normf="$stage/norm.tsv" \
    -v want_norm="${NORM:-}" \
    -v want_m="${M:-}" '
function q(s) { gsub(/"/, "", s); return "\"" s "\"" }
function add(list, x) { return list == "" ? x : list " " x }
function upd(name, x) {   # running min and max of the positive values of one quantity
    if (x == "nan" || x == "inf" || x + 0 <= 0) return
    x += 0
    if (!(name in LO) || x < LO[name]) LO[name] = x
    if (!(name in HI) || x > HI[name]) HI[name] = x
}
function rng(name, pad,   a, b, c) {   # log-axis range "name_lo/hi" padded by the factor pad
    if (!(name in LO)) return sprintf("%s_lo = 1e-3\n%s_hi = 1\nhas_%s = 0\n", name, name, name)
    a = LO[name] / pad; b = HI[name] * pad
    if (b / a < 10) { c = sqrt(a * b); a = c / sqrt(10); b = c * sqrt(10) }
    return sprintf("%s_lo = %.6g\n%s_hi = %.6g\nhas_%s = 1\n", name, a, name, b, name)
}
/^# summary\tslope\t/ { S[++ns] = $0; next }
/^#/ { next }
!header { header = 1; for (i = 1; i <= NF; i++) col[$i] = i; next }
{
    v = $col["variant"]; k = $col["kernel"]; p = $col["proj"]; r = $col["norm"]; m = $col["m"] + 0
    if (!(v in sv)) { sv[v] = ++nv; V[nv] = v }
    if (!(k in sk)) { sk[k] = 1; K = add(K, k); nk++ }
    if (!(p in sp)) { sp[p] = 1; Pl = add(Pl, p) }
    if (!(r in sr)) { sr[r] = 1; R[++nr] = r }
    if (!(m in sm)) { sm[m] = 1; Ms[++nms] = m }
    g = v SUBSEP k SUBSEP p SUBSEP r
    nrow++; RV[nrow] = v; RK[nrow] = k; RP[nrow] = p; RM[nrow] = m
    RR[nrow] = r; RX[nrow] = $col["norm2_sqrtd"]
    RE[nrow, 1] = $col["out_err_mean"]; RE[nrow, 2] = $col["out_err_lo"]; RE[nrow, 3] = $col["out_err_hi"]
    RE[nrow, 4] = $col["rowsum_err_mean"]; RE[nrow, 5] = $col["rowsum_err_lo"]
    RE[nrow, 6] = $col["rowsum_err_hi"]
    RL[nrow] = $col["norm2_sqrtd"] "\t" $col["out_err_mean"] "\t" $col["out_err_lo"] "\t" \
               $col["out_err_hi"] "\t" $col["rowsum_err_mean"] "\t" $col["rowsum_err_lo"] "\t" \
               $col["rowsum_err_hi"]
    if (!(g in mlo) || m < mlo[g]) mlo[g] = m
    if (!(g in mhi) || m > mhi[g]) mhi[g] = m
}
END {
    nsel = R[1]; for (i = 1; i <= nr; i++) if (R[i] + 0 == 1) nsel = R[i]
    if (want_norm != "") nsel = want_norm
    msel = 0; for (i = 1; i <= nms; i++) if (Ms[i] <= 256 && Ms[i] > msel) msel = Ms[i]
    if (msel == 0) { msel = Ms[1]; for (i = 1; i <= nms; i++) if (Ms[i] < msel) msel = Ms[i] }
    if (want_m != "") msel = want_m + 0
    vl = ""; for (i = 1; i <= nv; i++) vl = add(vl, V[i])
    printf "variants = %s\nkernels = %s\nprojs = %s\nnvar = %d\nnker = %d\nnsel = %s\nmsel = %d\n",
           q(vl), q(K), q(Pl), nv, nk, q(nsel), msel > fits
    for (i = 1; i <= nv; i++) printf "v_%d = %s\n", i, q(V[i]) > fits
    # default titles, replaced below by the fitted slopes
    split(K, ks, " "); split(Pl, ps, " ")
    for (i = 1; i <= nv; i++) for (a in ks) for (b in ps) {
        printf "s_%d_%s_%s = %s\n", i, ks[a], ps[b], q(ps[b]) > fits
        printf "r_%d_%s_%s = %s\n", i, ks[a], ps[b], q(ps[b]) > fits
    }
    printf "" > normf
    for (j = 1; j <= nrow; j++) {
        if (RV[j] == V[1] && RM[j] == msel) {
            printf "%s\t%s\t%s\n", RK[j], RP[j], RL[j] > normf
            for (c = 1; c <= 6; c++) upd("nrm", RE[j, c])
            x = RX[j] + 0; if (!hx || x < xlo) xlo = x; if (!hx || x > xhi) xhi = x; hx = 1
        }
        if (RR[j] == nsel) {
            upd("rope", RE[j, 1])
            if (RV[j] == V[1]) for (c = 1; c <= 6; c++) upd("err", RE[j, c])
        }
    }
    # axis ranges: m (log) with tics at the measured m, every k-th for at most 10 labels; the
    # errors (log); |q|^2/sqrt(d) (linear)
    for (i = 2; i <= nms; i++) { x = Ms[i]; for (j = i - 1; j >= 1 && Ms[j] > x; j--) Ms[j + 1] = Ms[j]; Ms[j + 1] = x }
    k = int((nms + 9) / 10); tl = ""
    for (i = 1; i <= nms; i += k) tl = tl (tl == "" ? "" : ", ") Ms[i]
    printf "mtics = \"%s\"\nm_lo = %.6g\nm_hi = %.6g\n", (tl == "" ? "auto" : "(" tl ")"),
           nms ? Ms[1] / 1.5 : 1, nms ? Ms[nms] * 1.5 : 10 > fits
    if (!hx) { xlo = 0; xhi = 1 }
    pad = (xhi > xlo) ? 0.08 * (xhi - xlo) : (xlo > 0 ? 0.5 * xlo : 1)
    printf "x_lo = %.6g\nx_hi = %.6g\n", xlo - pad, xhi + pad > fits
    printf "variant\tkernel\tproj\tnorm\twhat\tm\terr\n" > lines
    for (j = 1; j <= ns; j++) {
        split(S[j], f, "\t")
        v = f[3]; k = f[4]; p = f[5]; r = f[6]
        if (!(v in sv) || r != nsel) continue
        i = sv[v]; g = v SUBSEP k SUBSEP p SUBSEP r
        if (f[7] != "nan") {
            t = (f[8] != "nan") ? sprintf("%s: slope %.2f [%.2f, %.2f]", p, f[7], f[8], f[9]) \
                                : sprintf("%s: slope %.2f", p, f[7])
            printf "s_%d_%s_%s = %s\n", i, k, p, q(t) > fits
            if (i == 1) { upd("err", exp(f[10]) * mlo[g] ^ f[7]); upd("err", exp(f[10]) * mhi[g] ^ f[7]) }
            printf "%s\t%s\t%s\t%s\tout\t%g\t%.6g\n%s\t%s\t%s\t%s\tout\t%g\t%.6g\n\n",
                   v, k, p, r, mlo[g], exp(f[10]) * mlo[g] ^ f[7],
                   v, k, p, r, mhi[g], exp(f[10]) * mhi[g] ^ f[7] > lines
        }
        if (f[11] != "nan") {
            t = (f[12] != "nan") ? sprintf("%s: slope %.2f [%.2f, %.2f]", p, f[11], f[12], f[13]) \
                                 : sprintf("%s: slope %.2f", p, f[11])
            printf "r_%d_%s_%s = %s\n", i, k, p, q(t) > fits
            if (i == 1) { upd("err", exp(f[14]) * mlo[g] ^ f[11]); upd("err", exp(f[14]) * mhi[g] ^ f[11]) }
            printf "%s\t%s\t%s\t%s\trowsum\t%g\t%.6g\n%s\t%s\t%s\t%s\trowsum\t%g\t%.6g\n\n",
                   v, k, p, r, mlo[g], exp(f[14]) * mlo[g] ^ f[11],
                   v, k, p, r, mhi[g], exp(f[14]) * mhi[g] ^ f[11] > lines
        }
    }
    printf "%s%s%s", rng("err", 1.5), rng("rope", 1.5), rng("nrm", 1.5) > fits
}' "$tsv"

# the error-vs-norm points grouped by kernel and projection, in norm order (for the lines)
{ printf 'kernel\tproj\tx\tout\tout_lo\tout_hi\trowsum\trowsum_lo\trowsum_hi\n'
  sort -t '	' -k1,1 -k2,2 -k3,3g "$stage/norm.tsv"; } > "$stage/norm.tsv.tmp"
mv "$stage/norm.tsv.tmp" "$stage/norm.tsv"

caption=$(sed -n '1s/^# //p' "$tsv" | cut -c1-220)
plot_gnuplot "$here/approx.gp" "in=$(gp_str "$tsv"); fits=$(gp_str "$stage/fits.gp"); \
lines=$(gp_str "$stage/fitlines.tsv"); norms=$(gp_str "$stage/norm.tsv"); out=$(gp_str "$stage"); \
here=$(gp_str "$here"); caption=$(gp_str "$caption")"
plot_commit fits.gp fitlines.tsv norm.tsv
echo "plots/approx.sh: wrote $out/error_m, rope_m, error_norm (.png, .svg)"
