#!/bin/sh
# The long-term decay figures: runs `ropekit decay` for each figure into TSVs, then the gnuplot
# scripts beside this file into PNG and SVG.
#   plots/decay.sh [ropekit decay options]           (`make plots-decay PLOT_ARGS=...`)
# Environment: ROPEKIT (default build/ropekit), OUTDIR (default out/decay).
# The options are those of `ropekit decay` (see its --help) and reach the runs they concern;
# without any, the figures are RoFormer's settings (d = 128, base 10000):
#   --dim D, --base B[,B..], --scaling S[,S..]   the RoPE of every figure: Figure 2 draws every
#       base x scaling curve, the scores use the first curve, and the bases figure compares
#       the bases given (default 100, 1000, 10000, 500000) and the scalings given (default
#       linear:4, ntk:4, yarn:4:4096) of the first base; any scaling ropekit decay accepts works
#   --min-distance, --max-distance, --step   Figure 2 and the scores (default 0 .. 256, Figure 2
#       every 0.25, the scores every 1); the bases figure runs to max(16384, --max-distance)
#       at --step (default 1)
#   --draws N, --dist NAME, --seed S   the scores figure (default 2000 draws of N(0, 1) entries,
#       seed 1); its right panel always has q = k; --draws 0: no scores figure
#   --out is this script's (OUTDIR).
# The figures are written as a set (plots/common.sh): a failed run leaves none of them.
# Outputs in OUTDIR:
#   fig2.{tsv,png,svg}      B(dist) of each curve (plots/decay.gp); for RoFormer's settings
#                           Figure 2 itself, with the paper's clipped view on the right
#   scores.{png,svg}        empirical scores vs the bound of eq. 37 (plots/decay_scores.gp), from
#                           scores_<dist>.tsv (q, k independent; normal by default) and
#                           scores_same.tsv (q = k)
#   bases.{png,svg}         B for several bases and scalings (plots/decay_bases.gp), from
#                           bases.tsv and scalings.tsv; the long range as window means with the
#                           range of B in each window (bases_long.tsv, scalings_long.tsv)
#   decay.gp.in             the titles and ranges the figures read
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
rk=${ROPEKIT:-$root/build/ropekit}
out=${OUTDIR:-$root/out/decay}
. "$here/common.sh"

# ---- options ----------------------------------------------------------------------------------
# Each known option is kept in opt_<name> (set only when given); anything else goes to every run.
extra=""
quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
while [ $# -gt 0 ]; do
    a=$1; shift
    case $a in
        --*=*) name=${a%%=*}; val=${a#*=}; inline=1 ;;
        --*) name=$a; val=; inline=0 ;;
        *) echo "plots/decay.sh: unexpected argument '$a' (options are ropekit decay's: --name value)" >&2; exit 2 ;;
    esac
    case $name in
        --dim|--base|--scaling|--min-distance|--max-distance|--step|--draws|--dist|--seed)
            if [ "$inline" = 0 ]; then
                [ $# -gt 0 ] || { echo "plots/decay.sh: $name needs a value" >&2; exit 2; }
                val=$1; shift
            fi
            var=opt_$(printf '%s' "${name#--}" | tr - _)
            if eval "[ -n \"\${$var+x}\" ]"; then
                echo "plots/decay.sh: $name given more than once" >&2; exit 2
            fi
            eval "$var=\$val" ;;
        --out) echo "plots/decay.sh: --out is set by this script (OUTDIR=$out)" >&2; exit 2 ;;
        --help) sed -n '2,/^set -eu/{/^set -eu/d;s/^# \{0,1\}//;p;}' "$0"; exit 0 ;;
        *)  # an option of a newer ropekit decay: passed to every run as given
            extra="$extra $(quote "$a")"
            if [ "$inline" = 0 ] && [ $# -gt 0 ]; then
                case $1 in --*) ;; *) extra="$extra $(quote "$1")"; shift ;; esac
            fi ;;
    esac
done
# "--name value" if the option was given
given() { # NAME OPTION
    if eval "[ -n \"\${opt_$1+x}\" ]"; then eval "printf '%s %s' \"\$2\" \"\$(quote \"\$opt_$1\")\""; fi
}
curve_opts="$(given dim --dim) $(given base --base) $(given scaling --scaling)"
range_opts="$(given min_distance --min-distance) $(given max_distance --max-distance)"
draws=${opt_draws-2000}
dist=${opt_dist-normal}
seed=${opt_seed-1}
# the bases figure: the bases given (else four), the scalings given (else three) of the first base
bases=${opt_base-100,1000,10000,500000}
first_base=${opt_base-10000}
first_base=${first_base%%,*}
scalings=none
for s in $(printf '%s' "${opt_scaling-linear:4,ntk:4,yarn:4:4096}" | tr ',' ' '); do
    [ "$s" = none ] || scalings="$scalings,$s"
done
long=16384
if [ -n "${opt_max_distance+x}" ]; then
    long=$(awk -v m="$opt_max_distance" -v l="$long" 'BEGIN { m += 0; print (m > l ? m : l) }')
fi

plot_begin decay "fig2 scores bases"
[ -x "$rk" ] || plot_die "$rk is not built (run make)"
run() { # the ropekit decay arguments, each already quoted where needed
    eval "\"\$rk\" decay $*"
}

run --draws 0 "$curve_opts" "$range_opts" --step "$(quote "${opt_step-0.25}")" $extra --out "$(quote "$out/fig2.tsv")"
figs="fig2"
if [ "$draws" != 0 ]; then
    score_opts="--draws $(quote "$draws") --seed $(quote "$seed") $curve_opts $range_opts $(given step --step) $extra"
    run "$score_opts" --dist "$(quote "$dist")" --out "$(quote "$out/scores_$dist.tsv")"
    [ "$dist" = same ] || run "$score_opts" --dist same --out "$(quote "$out/scores_same.tsv")"
    figs="$figs scores"
else
    plot_figs="fig2 bases"
    echo "plots/decay.sh: --draws 0: no scores figure"
fi
run --draws 0 "$(given dim --dim)" --base "$(quote "$bases")" --max-distance "$long" \
    "$(given step --step)" $extra --out "$(quote "$out/bases.tsv")"
run --draws 0 "$(given dim --dim)" --base "$(quote "$first_base")" --scaling "$(quote "$scalings")" \
    --max-distance "$long" "$(given step --step)" $extra --out "$(quote "$out/scalings.tsv")"

# ---- what the figures need from the tables ------------------------------------------------
# From a table's '#' line: the curves (column, legend title, whether it has a scaling), d and
# the distance range; from its rows: B's extremes. PREFIX names the gnuplot variables.
meta=$stage/decay.gp.in
: > "$meta"
describe() { # TSV PREFIX
    awk -F'\t' -v p="$2" '
    function q(s) { gsub(/"/, "", s); return "\"" s "\"" }
    function num(s,   v) { v = s + 0; return sprintf("%g", v) }
    NR == 1 {
        if (match($0, /dim=[0-9]+/)) d = substr($0, RSTART + 4, RLENGTH - 4) + 0
        s = $0
        while (match(s, /[A-Za-z0-9_.+-]+\[[^]]*\]/)) {
            c = substr(s, RSTART, RLENGTH); s = substr(s, RSTART + RLENGTH)
            k = index(c, "["); nm = substr(c, 1, k - 1); body = substr(c, k + 1, length(c) - k - 1)
            n++; name[n] = nm; delete kv
            m = split(body, f, " ")
            for (i = 1; i <= m; i++) { e = index(f[i], "="); kv[substr(f[i], 1, e - 1)] = substr(f[i], e + 1) }
            t = "base " num(kv["base"])
            if (kv["scaling"] == "none" || kv["scaling"] == "") {
                if (kv["base"] + 0 == 10000) t = t " (RoFormer)"
                if (kv["base"] + 0 == 500000) t = t " (Llama 3)"
                scaled[n] = 0
            } else {
                t = t ", " kv["scaling"]
                if ("factor" in kv) t = t " x" num(kv["factor"])
                if ("orig_ctx" in kv) t = t " (L = " num(kv["orig_ctx"]) ")"
                for (key in kv) if (key != "base" && key != "scaling" && key != "factor" && key != "orig_ctx" && key !~ /^beta_/) t = t " " key "=" kv[key]
                scaled[n] = 1
            }
            title[n] = t; base[n] = kv["base"] + 0
        }
        next
    }
    /^#/ { next }
    !h {
        h = 1; for (i = 1; i <= NF; i++) col[$i] = i
        for (i = 1; i <= n; i++) cname[i] = (n > 1) ? "bound_" name[i] : "bound"
        next
    }
    {
        x = $1 + 0
        if (!hx || x < xmin) xmin = x; if (!hx || x > xmax) xmax = x; hx = 1
        for (i = 1; i <= n; i++) {
            b = $col[cname[i]] + 0
            if (!(i in lo) || b < lo[i]) { lo[i] = b; at[i] = x }
            if (!(i in hi) || b > hi[i]) hi[i] = b
            if (!hb || b < blo) blo = b; if (!hb || b > bhi) bhi = b; hb = 1
            B[NR, i] = b; X[NR] = x
        }
    }
    END {
        printf "%s_n = %d\n%s_d = %d\n%s_xmin = %.10g\n%s_xmax = %.10g\n%s_blo = %.10g\n%s_bhi = %.10g\n",
               p, n, p, d, p, xmin, p, xmax, p, blo, p, bhi
        for (i = 1; i <= n; i++)
            printf "%s_col_%d = %s\n%s_title_%d = %s\n%s_scaled_%d = %d\n%s_min_%d = %.10g\n%s_at_%d = %.10g\n",
                   p, i, q(cname[i]), p, i, q(title[i]), p, i, scaled[i], p, i, lo[i], p, i, at[i]
        # the tail: the largest B at |distance| >= 1/32 of the largest |distance| (the peak at
        # distance 0 left out), for a zoomed view
        amax = (xmax > -xmin) ? xmax : -xmin; cut = amax / 32; th = blo
        for (r in X) if (X[r] >= cut || -X[r] >= cut) for (i = 1; i <= n; i++) if (B[r, i] > th) th = B[r, i]
        printf "%s_tail_cut = %.6g\n%s_tail_hi = %.10g\n", p, cut, p, th
        # the paper settings: one curve, base 10000, no scaling, d = 128
        printf "%s_paper = %d\n", p, (n == 1 && base[1] == 10000 && !scaled[1] && d == 128)
    }' "$1" >> "$meta"
}
describe "$out/fig2.tsv" f2
describe "$out/bases.tsv" ba
describe "$out/scalings.tsv" sc
# The scores' log y ranges (positive values only) and the count of rows whose score or its 5%
# quantile is <= 0 (the log axis cannot show those; the figure says so).
scores_range() { # TSV PREFIX COLUMNS-FOR-THE-RANGE
    awk -F'\t' -v p="$2" -v cols="$3" '
    /^#/ { next }
    !h { h = 1; for (i = 1; i <= NF; i++) c[$i] = i; nc = split(cols, C, " "); next }
    {
        rows++
        for (i = 1; i <= nc; i++) {
            x = $c[C[i]] + 0
            if (x > 0 && (!hv || x < lo)) lo = x; if (x > 0 && (!hv || x > hi)) hi = x; if (x > 0) hv = 1
        }
        if ($c["score_q05"] + 0 <= 0) nq++
        if ($c["score_mean"] + 0 <= 0) nm++
    }
    END {
        if (!hv) { lo = 1; hi = 10 }
        if (hi / lo < 10) { hi = lo * 10 }
        printf "%s_lo = %.6g\n%s_hi = %.6g\n%s_rows = %d\n%s_neg_q05 = %d\n%s_neg_mean = %d\n",
               p, lo / 2, p, hi * 2, p, rows, p, nq + 0, p, nm + 0
    }' "$1" >> "$meta"
}
if [ "$draws" != 0 ]; then
    scores_range "$out/scores_$dist.tsv" si "abs_q05 abs_q95 abs_median abel_median perdraw_bound_median"
    scores_range "$out/scores_same.tsv" ss "score_q05 score_q95 score_mean abel_median perdraw_bound_median"
fi

# The long range: B of each curve summarised in windows of 1/12 decade in distance (the
# oscillation is faster than a pixel there): the window's mean, minimum and maximum, one gnuplot
# data block per curve (x = the geometric mean distance of the window), columns distance, mean,
# min, max, no header.
windows() { # TSV OUT
    awk -F'\t' '
    /^#/ { next }
    !h { h = 1; nc = (NF > 2) ? NF - 2 : 1; first = (NF > 2) ? 3 : 2; next }
    $1 + 0 >= 1 {
        x = $1 + 0; w = int(12 * log(x) / log(10) + 1e-9)
        if (!(w in seen)) { seen[w] = 1; W[++nw] = w }
        for (c = 0; c < nc; c++) {
            b = $(first + c) + 0; k = c SUBSEP w
            s[k] += b; n[k]++; lx[k] += log(x)
            if (!(k in mn) || b < mn[k]) mn[k] = b
            if (!(k in mx) || b > mx[k]) mx[k] = b
        }
    }
    END {
        for (c = 0; c < nc; c++) {
            if (c) printf "\n\n"
            for (i = 1; i <= nw; i++) {
                k = c SUBSEP W[i]
                printf "%.6g\t%.6g\t%.6g\t%.6g\n", exp(lx[k] / n[k]), s[k] / n[k], mn[k], mx[k]
            }
        }
    }' "$1" > "$2"
}
windows "$out/bases.tsv" "$stage/bases_long.tsv"
windows "$out/scalings.tsv" "$stage/scalings_long.tsv"
# Figure 2's range of the same tables (distances up to 256), for the first panel
near() { awk -F'\t' '/^#/ { print; next } !h { h = 1; print; next } $1 + 0 <= 256' "$1" > "$2"; }
near "$out/bases.tsv" "$stage/bases_near.tsv"
near "$out/scalings.tsv" "$stage/scalings_near.tsv"

# Captions from the tables' '#' configuration lines: version, d, curves, distances, draws.
caption() {
    sed -n '1{
        s/\[[^]]*\]//g
        s/^# ropekit decay \([^ ]*\) ([^)]*): dim=\([0-9]*\) curves=\([^ ]*\) min_distance=\([^ ]*\) step=\([^ ]*\) rows=[0-9]* max_distance=\([^ ]*\) draws=\([0-9]*\)\(.*\)$/ropekit decay \1: d = \2, curves \3, distance \4 .. \6 step \5, draws \7\8/
        s/ dist=\([a-z]*\) seed=\([0-9]*\) rng=mt19937/ (\1, seed \2)/
        p
    }' "$1"
}

plot_gnuplot "$here/decay.gp" "in=$(gp_str "$out/fig2.tsv"); meta=$(gp_str "$meta"); \
out=$(gp_str "$stage/fig2"); here=$(gp_str "$here"); caption=$(gp_str "$(caption "$out/fig2.tsv")")"
if [ "$draws" != 0 ]; then
    plot_gnuplot "$here/decay_scores.gp" "iid=$(gp_str "$out/scores_$dist.tsv"); \
same=$(gp_str "$out/scores_same.tsv"); dist=$(gp_str "$dist"); meta=$(gp_str "$meta"); out=$(gp_str "$stage/scores"); \
here=$(gp_str "$here"); caption=$(gp_str "$(caption "$out/scores_$dist.tsv"); q = k: the same seed")"
fi
plot_gnuplot "$here/decay_bases.gp" "bases=$(gp_str "$stage/bases_near.tsv"); scal=$(gp_str "$stage/scalings_near.tsv"); \
blong=$(gp_str "$stage/bases_long.tsv"); slong=$(gp_str "$stage/scalings_long.tsv"); \
meta=$(gp_str "$meta"); out=$(gp_str "$stage/bases"); here=$(gp_str "$here"); \
caption=$(gp_str "$(caption "$out/bases.tsv"); and base $first_base with --scaling $scalings")"
plot_commit decay.gp.in bases_long.tsv scalings_long.tsv
echo "plots/decay.sh: wrote $out/$(echo "$figs bases" | sed 's/ /, /g') (.png, .svg)"
