#!/bin/sh
# The sequence-length scaling figures: runs `ropekit scaling` into OUTDIR/scaling.tsv (the
# summary it prints goes to OUTDIR/summary.txt as well), then plots/scaling.gp into PNG and SVG.
#   plots/scaling.sh [ropekit scaling options]     (default options: --quick; not --out)
# Environment: ROPEKIT (default build/ropekit), OUTDIR (default out/scaling), PLOT_ONLY=1 to
# redraw from an existing OUTDIR/scaling.tsv without running. --resume continues a table.
# Outputs in OUTDIR: scaling.tsv, summary.txt, time, memory, throughput, crossover (.png, .svg),
# and the derived fits.gp, fitlines.tsv, ratio.tsv the plots read.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
rk=${ROPEKIT:-$root/build/ropekit}
out=${OUTDIR:-$root/out/scaling}
tsv=$out/scaling.tsv

command -v gnuplot >/dev/null 2>&1 || {
    echo "plots/scaling.sh: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }
mkdir -p "$out"
if [ "${PLOT_ONLY:-0}" != 1 ]; then
    [ -x "$rk" ] || { echo "plots/scaling.sh: $rk is not built (run make)" >&2; exit 1; }
    [ $# -gt 0 ] || set -- --quick
    "$rk" scaling "$@" --out "$tsv" > "$out/summary.txt" || {
        st=$?; cat "$out/summary.txt"; exit $st; }
    cat "$out/summary.txt"
fi
[ -s "$tsv" ] || { echo "plots/scaling.sh: no table $tsv" >&2; exit 1; }

# From the table: the variant and mask lists and the legend titles (fits.gp), the fitted lines'
# end points (fitlines.tsv: variant mask n t), the time ratios to the exact reference with
# their CI-derived ranges (ratio.tsv: variant mask n ratio lo hi).
awk -F'\t' -v fits="$out/fits.gp" -v lines="$out/fitlines.tsv" -v ratio="$out/ratio.tsv" '
function q(s) { gsub(/"/, "", s); return "\"" s "\"" }
/^# summary\texponent\t/ {
    v = $3; m = $4; key = v SUBSEP m
    if ($5 != "nan") {
        title[key] = ($6 != "nan") ? sprintf("%s: b = %.2f [%.2f, %.2f]", v, $5, $6, $7) \
                                   : sprintf("%s: b = %.2f", v, $5)
        nl++; L[nl] = sprintf("%s\t%s\t%s\t%.6g\n%s\t%s\t%s\t%.6g\n\n", v, m, $9, exp($8) * $9 ^ $5,
                              v, m, $10, exp($8) * $10 ^ $5)
    }
    next
}
/^# summary\tcrossover\t/ {
    v = $3; m = $4; key = v SUBSEP m; ref[key] = $5; xc[key] = $6
    ct[key] = ($6 != "nan") ? sprintf("%s / %s: faster from n = %.0f", v, $5, $6) \
                            : sprintf("%s / %s: no crossover measured", v, $5)
    next
}
/^#/ { next }
!header { header = 1; for (i = 1; i <= NF; i++) col[$i] = i; next }
{
    v = $col["variant"]; m = $col["mask"]
    if (!(v in seenv)) { seenv[v] = ++nv; V[nv] = v }
    if (!(m in seenm)) { seenm[m] = ++nm; M[nm] = m }
    if ($col["status"] == "ok") {
        k = v SUBSEP m SUBSEP $col["n"]
        med[k] = $col["median_s"]; lo[k] = $col["ci_lo_s"]; hi[k] = $col["ci_hi_s"]
        if (!((v SUBSEP m SUBSEP "n") in have)) { have[v SUBSEP m SUBSEP "n"] = 1 }
        ns[v SUBSEP m] = ns[v SUBSEP m] " " $col["n"]
    }
}
END {
    vl = ""; for (i = 1; i <= nv; i++) vl = vl (i > 1 ? " " : "") V[i]
    ml = ""; for (i = 1; i <= nm; i++) ml = ml (i > 1 ? " " : "") M[i]
    printf "variants = %s\nmasks = %s\nnvar = %d\n", q(vl), q(ml), nv > fits
    for (i = 1; i <= nv; i++) for (j = 1; j <= nm; j++) {
        key = V[i] SUBSEP M[j]
        printf "t_%s_%d = %s\n", M[j], i, q((key in title) ? title[key] : V[i]) > fits
        printf "c_%s_%d = %s\n", M[j], i, q((key in ct) ? ct[key] : "") > fits
        printf "x_%s_%d = %s\n", M[j], i, ((key in xc) && xc[key] != "nan") ? xc[key] : "NaN" > fits
        if (!(key in ref)) continue
        split(ns[key], list, " ")
        for (t in list) {
            a = V[i] SUBSEP M[j] SUBSEP list[t]; b = ref[key] SUBSEP M[j] SUBSEP list[t]
            if ((b in med) && med[b] > 0 && lo[b] > 0)
                printf "%s\t%s\t%s\t%.6g\t%.6g\t%.6g\n", V[i], M[j], list[t], med[a] / med[b],
                       lo[a] / hi[b], hi[a] / lo[b] > ratio
        }
        printf "\n" > ratio
    }
    printf "variant\tmask\tn\tt\n" > lines
    for (i = 1; i <= nl; i++) printf "%s", L[i] > lines
    printf "" > ratio
}' "$tsv"
# ratio rows must be in length order for the lines
{ printf 'variant\tmask\tn\tratio\tlo\thi\n'
  sort -t '	' -k1,1 -k2,2 -k3,3n "$out/ratio.tsv" |
      awk -F'\t' 'NF && (p != $1 FS $2) { if (p != "") print ""; p = $1 FS $2 } NF { print }'
} > "$out/ratio.tsv.tmp"
mv "$out/ratio.tsv.tmp" "$out/ratio.tsv"

caption=$(sed -n '1s/^# //p' "$tsv" | cut -c1-220)
gnuplot -e "in='$tsv'; fits='$out/fits.gp'; lines='$out/fitlines.tsv'; ratio='$out/ratio.tsv'; \
out='$out'; caption='$caption'" "$here/scaling.gp"
echo "plots/scaling.sh: wrote $out/time, memory, throughput, crossover (.png, .svg)"
