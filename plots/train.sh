#!/bin/sh
# The training figures (the paper's Figure 3, right, in small, with error bars): runs
# `ropekit train --compare` into OUTDIR (its tables and checkpoints), then plots/train.gp.
#   plots/train.sh [ropekit train options...]             (`make plots-train PLOT_ARGS=...`)
# Without options: --quick. Without --compare: the arms
#   performer,performer-rope-qk,performer-rope-features,softmax,softmax-rope
# (the NoPE arms with learned absolute positions, the paper's baseline); seeds: the command's
# default (4).
# --resume continues an interrupted comparison (its tables and checkpoints in OUTDIR).
# Environment: ROPEKIT (default build/ropekit), OUTDIR (default out/train), PLOT_ONLY=1 to redraw
# from the tables in OUTDIR without training.
# Outputs in OUTDIR: the tables of `ropekit train --compare` (runs.tsv, curves.tsv, paired.tsv,
# paired_seeds.tsv, claims.tsv, extrapolation.tsv, extrapolation_summary.tsv, timing.tsv, ckpt/),
# summary.txt (its report: the intervals and the two claims' verdicts), and the figures
#   bpc            validation bits per character against step: mean over the seeds and its 95%
#                  confidence band, one colour per arm
#   paired         each RoPE arm minus its baseline, seed by seed paired: mean and band; below 0
#                  RoPE is ahead
#   extrapolation  bits per character against evaluation length (1x .. 8x the training length),
#                  one panel per arm, one line per RoPE scaling (none, linear, NTK, YaRN)
#   timing         tokens per second and the share of step time of each part, per arm
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
rk=${ROPEKIT:-$root/build/ropekit}
out=${OUTDIR:-$root/out/train}
. "$here/common.sh"
plot_begin train "bpc paired extrapolation timing"

if [ "${PLOT_ONLY:-0}" != 1 ]; then
    [ -x "$rk" ] || plot_die "$rk is not built (run make)"
    [ $# -gt 0 ] || set -- --quick
    have_cmp=0
    for a in "$@"; do
        case $a in
            --dir|--dir=*|--out|--out=*) plot_die "$a is set by this script (OUTDIR=$out)" ;;
            --compare|--compare=*) have_cmp=1 ;;
        esac
    done
    [ $have_cmp = 1 ] || set -- "$@" --compare performer,performer-rope-qk,performer-rope-features,softmax,softmax-rope
    "$rk" train "$@" --dir "$out" > "$stage/summary.txt" || {
        st=$?; cat "$stage/summary.txt"; exit $st; }
    cat "$stage/summary.txt"
    mv -f "$stage/summary.txt" "$out/summary.txt"
fi
for f in curves paired extrapolation_summary timing; do
    [ -s "$out/$f.tsv" ] || plot_die "no table $out/$f.tsv"
done

# Blocks for gnuplot's `index` (two blank lines apart) and the lists the figures loop over:
#   curves.dat   per arm: step mean lo hi
#   paired.dat   per RoPE arm: step mean lo hi
#   extrap.dat   per (arm, scaling): length mean lo hi
#   timing.dat   per arm: the mean over its seeds of tokens/s and of every share
awk -F'\t' -v meta="$stage/train.gp.in" -v cd="$stage/curves.dat" -v pd="$stage/paired.dat" '
function q(s) { gsub(/"/, "", s); return "\"" s "\"" }
FNR == 1 { f++ }
/^#/ || FNR == 2 { next }
f == 1 {
    if (!($1 in ai)) { ai[$1] = ++na; A[na] = $1 }
    C[ai[$1]] = C[ai[$1]] sprintf("%s\t%s\t%s\t%s\n", $4, $6, $7, $8)
    k = ai[$1]; nr[k]++
    if (nr[k] == 2 && (!hy || $8 + 0 > ytop)) { ytop = $8 + 0; hy = 1 }   # 2nd evaluation
    if (!hb || $7 + 0 < ybot) { ybot = $7 + 0; hb = 1 }
    next
}
f == 2 {
    k = $1 " - " $2
    if (!(k in pi)) { pi[k] = ++np; Pn[np] = k }
    Pd[pi[k]] = Pd[pi[k]] sprintf("%s\t%s\t%s\t%s\n", $3, $5, $6, $7)
    next
}
END {
    printf "narms = %d\nnpairs = %d\n", na, np > meta
    # the y range: from below the lowest band to above the second evaluation (the first, at
    # step 0, is ~8 bits and would flatten the curves)
    if (hy) printf "ylo = %g\nyhi = %g\n", ybot - 0.1, ytop + 0.2 > meta
    else printf "ylo = NaN\nyhi = NaN\n" > meta
    for (i = 1; i <= na; i++) { printf "arm_%d = %s\n", i, q(A[i]) > meta; printf "%s\n\n", C[i] > cd }
    for (i = 1; i <= np; i++) { printf "pair_%d = %s\n", i, q(Pn[i]) > meta; printf "%s\n\n", Pd[i] > pd }
    if (!na) printf "\n" > cd
    if (!np) printf "\n" > pd
}' "$out/curves.tsv" "$out/paired.tsv"

awk -F'\t' -v meta="$stage/train.gp.in" -v xd="$stage/extrap.dat" '
function q(s) { gsub(/"/, "", s); return "\"" s "\"" }
/^#/ || FNR == 2 { next }
{
    if (!($1 in ai)) { ai[$1] = ++na; A[na] = $1 }
    k = $1 SUBSEP $2
    if (!(k in bi)) { bi[k] = ++nb; B[nb] = k; S[nb] = $2; BA[nb] = ai[$1] }
    D[bi[k]] = D[bi[k]] sprintf("%s\t%s\t%s\t%s\n", $4, $6, $7, $8)
    if (!hl || $4 + 0 > lmax) lmax = $4 + 0
    if (!hl || $4 + 0 < lmin) lmin = $4 + 0
    hl = 1
}
END {
    printf "xarms = %d\nxblocks = %d\nlmin = %g\nlmax = %g\n", na, nb, lmin, lmax >> meta
    for (i = 1; i <= na; i++) printf "xarm_%d = %s\n", i, q(A[i]) >> meta
    for (i = 1; i <= nb; i++) {
        printf "xb_%d_arm = %d\nxb_%d_scaling = %s\n", i, BA[i], i, q(S[i]) >> meta
        printf "%s\n\n", D[i] > xd
    }
    if (!nb) printf "\n" > xd
}' "$out/extrapolation_summary.tsv"

awk -F'\t' -v meta="$stage/train.gp.in" -v td="$stage/timing.dat" '
function q(s) { gsub(/"/, "", s); return "\"" s "\"" }
/^#/ { next }
!h { h = 1; for (i = 1; i <= NF; i++) c[$i] = i; next }
{
    a = $c["arm"]
    if (!(a in ai)) { ai[a] = ++na; A[na] = a }
    k = ai[a]; n[k]++
    tps[k] += $c["tokens_per_s"]; ms[k] += $c["ms_per_step"]
    split("attn_fwd attn_bwd attn_proj mlp norm_embed head optimizer other", P, " ")
    for (j = 1; j <= 8; j++) s[k, j] += $c[P[j]]
}
END {
    printf "tarms = %d\n", na >> meta
    printf "arm\ttokens_per_s\tms_per_step\tattn_fwd\tattn_bwd\tattn_proj\tmlp\tnorm_embed\thead\toptimizer\tother\n" > td
    for (k = 1; k <= na; k++) {
        printf "%s\t%.1f\t%.3f", A[k], tps[k] / n[k], ms[k] / n[k] > td
        for (j = 1; j <= 8; j++) printf "\t%.4f", 100 * s[k, j] / n[k] > td
        printf "\n" > td
    }
}' "$out/timing.tsv"

caption=$(sed -n '1{s/^# //;s/ data=.*$//;p}' "$out/curves.tsv" | cut -c1-230)
plot_gnuplot "$here/train.gp" "meta='$stage/train.gp.in'; curves='$stage/curves.dat'; \
paired='$stage/paired.dat'; extrap='$stage/extrap.dat'; timing='$stage/timing.dat'; \
out='$stage'; caption=$(gp_str "$caption")"
plot_commit
echo "plots/train.sh: wrote $out/bpc, paired, extrapolation, timing (.png, .svg)"
