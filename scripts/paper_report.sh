#!/bin/sh
# The report of `make paper`: OUT/REPORT.md and OUT/index.html (the same text with every figure
# embedded as a base64 PNG: one self-contained file, no external image, CSS or JS, that can be
# mailed or attached) from the step outputs in OUT (scripts/paper.sh).
#   sh scripts/paper_report.sh OUT
# Environment (set by scripts/paper.sh): PAPER_MODE (quick | full | smoke), PAPER_SECONDS (the
# run's wall time), ROPEKIT (the command line, for its version).
# For each claim of the paper the verdict comes from the tools' own outputs:
#   PASS           every check of the claim passed
#   FAIL           a deterministic or statistically controlled check contradicts the claim
#                  (a theory FAIL row, a Figure 2 value off, a violated bound, ...)
#   NOT CONFIRMED  a measurement (timing exponent, fitted error slope, paired training interval)
#                  does not support the claim in this run; the numbers are in the report
#   NOT RUN        the step that measures it did not finish (see OUT/<step>/run.log)
# Only POSIX sh, sed, awk (mawk is enough) and coreutils' base64.
set -eu
out=${1:?usage: scripts/paper_report.sh OUT}
root=$(cd "$(dirname "$0")/.." && pwd)
case $out in /*) ;; *) out=$(pwd)/$out ;; esac
rk=${ROPEKIT:-$root/build/ropekit}
mode=${PAPER_MODE:-unknown}
# The scaling claim: a fitted exponent whose 95% interval misses the expected one (1 or 2) but
# lies wholly within this distance of it still confirms the growth order ("close").
EXP_TOL=0.15
# ... and only when the fit used at least this many lengths and its interval excludes the
# competing exponent (2 for a linear form, 1 for exact attention): three points give intervals
# wide enough to hold both.
MIN_SIZES=5
secs=${PAPER_SECONDS:-}
tmp=$out/.report
rm -rf "$tmp"
mkdir -p "$tmp"

rel() { case $1 in "$root"/*) printf '%s' "${1#"$root"/}" ;; *) printf '%s' "$1" ;; esac; }
outrel=$(rel "$out")

# ---- the intermediate document ---------------------------------------------------------------
# One directive per line, fields separated by tabs; rendered to Markdown and HTML at the end:
#   H1|H2|H3 <text>   P <text>   UL <text>   PRE <text>   TH <cell>...   TR <cell>...
#   IMG <path relative to OUT> <caption>
# Inline markup in texts: `code` and **bold** (everything else is literal text).
T=$(printf '\t')
emit() { # directive, fields...
    _l=$1; shift
    for _f in "$@"; do _l="$_l$T$_f"; done
    printf '%s\n' "$_l" >> "$doc"
}
img() { # path caption: only if the file exists
    if [ -s "$out/$1" ]; then emit IMG "$1" "$2"; else emit P "(figure \`$1\` missing: its step did not finish)"; fi
}

# The worst of several verdicts: FAIL > NOT RUN > NOT CONFIRMED > PASS.
worst() {
    w=PASS
    for v in "$@"; do
        case $v in
            FAIL) w=FAIL ;;
            NOT_RUN|"NOT RUN") [ "$w" = FAIL ] || w="NOT RUN" ;;
            NOT_CONFIRMED|"NOT CONFIRMED") case $w in PASS) w="NOT CONFIRMED" ;; esac ;;
        esac
    done
    printf '%s' "$w"
}

# ---- theory rows of one claim ----------------------------------------------------------------
# theory_part GROUP: a table of the `ropekit theory` rows of the group (by the equation column:
# relative, decay = (36)/(37), eq19 = (19), favor = Lemma/Theorem); prints the verdict.
theory_tsv=$out/theory/theory.tsv
theory_part() {
    if [ ! -s "$theory_tsv" ]; then
        emit P "**ropekit theory**: not run (no \`theory/theory.tsv\`)."
        printf 'NOT RUN'
        return
    fi
    awk -F'\t' -v g="$1" -v doc="$doc" '
    function grp(eq) {
        if (eq ~ /^\(19\)/) return "eq19"
        if (eq ~ /^\((36|37)\)/) return "decay"
        if (eq ~ /Lemma|Theorem/) return "favor"
        return "relative"
    }
    /^#/ { next }
    !h { h = 1; for (i = 1; i <= NF; i++) c[$i] = i; next }
    grp($c["equation"]) == g {
        what = $c["what"]; if (substr(what, 1, 8) == "figure: ") what = substr(what, 9)
        k = index(what, ": "); if (k > 0) what = substr(what, 1, k - 1)
        if (length(what) > 110) what = substr(what, 1, 107) "..."
        m = $c["measured"] " " $c["cmp"] " " $c["tolerance"]
        sub(/ +$/, "", m)
        row[++n] = "TR\t`" $c["id"] "`\t" $c["equation"] "\t" $c["precision"] "\t" what "\t" m "\t" $c["result"]
        cnt[$c["result"]]++
    }
    END {
        if (n == 0) { print "P\tNo `ropekit theory` rows for this claim." >> doc; printf "NOT RUN"; exit }
        printf "P\t**ropekit theory** (%d checks: %d PASS, %d FAIL%s):\n", n, cnt["PASS"] + 0,
               cnt["FAIL"] + 0, cnt["INFO"] ? ", " cnt["INFO"] " INFO (a figure, not a check)" : "" >> doc
        print "TH\tcheck\tequation\tprec.\twhat\tmeasured vs tolerance\tresult" >> doc
        for (i = 1; i <= n; i++) print row[i] >> doc
        printf (cnt["FAIL"] ? "FAIL" : "PASS")
    }' "$theory_tsv"
}

# ---- claim 1: the relative property ------------------------------------------------------------
claim_relative() {
    emit H2 "1. The relative property (eqs. 11, 12, 15, 16, 34, 35)"
    emit P "**Claim.** With RoPE the score \`(R_m q).(R_n k)\` depends on the positions only through \`m - n\` (eq. 16: \`R_m^T R_n = R_{n-m}\`); R is orthogonal, so norms are kept; the elementwise form (34) equals the block-diagonal matrix (15); the complex form (35) holds; interleaved and half-split pairings agree up to a fixed permutation."
    v1=$(theory_part relative)
    v2=$(pattern_part relative)
    v=$(worst "$v1" "$v2")
    if [ "$v1" = PASS ]; then
        emit P "**Verdict: $v.** Every difference in the theory rows is rounding only, within the tolerance the theory derives for it."
    else
        emit P "**Verdict: $v.**"
    fi
    img pattern/pattern.png "Attention weight against relative distance for each position encoding (softmax family in blue, FAVOR+ family in orange); each title gives the shift test's verdict"
    # any other figure of the pattern step
    for p in "$out"/pattern/*.png; do
        [ -f "$p" ] || continue
        case ${p##*/} in pattern.png|pattern_score.png) continue ;; esac
        img "pattern/${p##*/}" "ropekit pattern: ${p##*/}"
    done
    printf '%s\t%s\t%s\n' 1 "$v" "Relative property (eqs. 11, 16, 34, 35): theory checks; shift test of RoPE attention (ropekit pattern)" >> "$tmp/verdicts"
}

# ---- the pattern step (ropekit pattern) --------------------------------------------------------
# pattern_part CLAIM: rows of pattern/pattern.tsv bearing on the claim; prints the verdict.
pattern_part() {
    ptsv=$out/pattern/pattern.tsv
    if [ ! -s "$ptsv" ]; then
        emit P "**ropekit pattern**: not run (no \`pattern/pattern.tsv\`)."
        printf 'NOT RUN'
        return
    fi
    awk -F'\t' -v claim="$1" -v doc="$doc" '
    BEGIN {
        # what each encoding should give: relative by construction or not (docs/theory.md#eq-19, #relative-biases)
        split("none:yes sinusoidal:no t5:yes alibi:yes rope:yes xpos:yes linear-rope-eq19:yes linear-rope-qk:no rpe-fft:yes", E, " ")
        for (i in E) { split(E[i], kv, ":"); expect[kv[1]] = kv[2] }
        why["none"] = "no position at all"; why["sinusoidal"] = "absolute: eq. 3-4"
        why["t5"] = "bias of m - n"; why["alibi"] = "bias of m - n"; why["rope"] = "eq. 16"
        why["xpos"] = "RoPE with a decay of m - n"; why["linear-rope-eq19"] = "eq. 19: numerator rotated"
        why["linear-rope-qk"] = "relative only in expectation over the projection, docs/theory.md#eq-19"
        why["rpe-fft"] = "Toeplitz bias of m - n"
        key = (claim == "relative") ? "rope" : "linear-rope-eq19"
    }
    NR == 1 { if (match($0, /shift=-?[0-9]+/)) shift = substr($0, RSTART + 6, RLENGTH - 6) }
    /^# summary\t/ {
        e = $2
        if (claim == "eq19" && e !~ /^linear-rope/) next
        for (i = 3; i <= NF; i++) { k = index($i, "="); v[substr($i, 1, k - 1)] = substr($i, k + 1) }
        n++
        ex = (e in expect) ? expect[e] : "?"
        got = v["exactly_relative"]
        mark = (ex == "?") ? "" : (got == ex ? "as expected" : "**unexpected**")
        row[n] = sprintf("TR\t`%s`\t%s\t%s\t%s\t%s\t%s (%s)\t%s", e, v["shift_max_diff"], v["max_abs_score"],
                         v["library_check_max_diff"], got, ex, why[e], mark)
        if (e == key) found = got
    }
    END {
        if (!n) { print "P\t**ropekit pattern**: the table has no summary lines." >> doc; printf "NOT RUN"; exit }
        printf "P\t**ropekit pattern** (`pattern/pattern.tsv`): every position moved by %s; exactly relative when no score changes by more than 1e-9 (1 + max |score|):\n", shift >> doc
        print "TH\tencoding\tmax score change under the shift\tmax |score|\tlibrary check (max diff)\texactly relative\texpected\tmatch" >> doc
        for (i = 1; i <= n; i++) print row[i] >> doc
        printf (found == "yes" ? "PASS" : (found == "" ? "NOT RUN" : "FAIL"))
    }' "$ptsv"
}

# ---- claim 2: long-term decay and Figure 2 ---------------------------------------------------
claim_decay() {
    emit H2 "2. Long-term decay: the bound (36)-(37) and Figure 2"
    emit P "**Claim.** By Abel summation (36) the score is bounded by \`max_i |h_{i+1} - h_i| * sum_j |S_j|\` (37), and the relative upper bound \`B = (1/(d/2)) sum_{j=1..d/2} |S_j|\` decays as the relative distance grows (Figure 2: d = 128, base 10000, distance 0..256). Reference values (\`docs/theory.md#figure-2\`, recomputed in double precision): B(0) = 32.5 = (d/2 + 1)/2, B(256) = 6.543097, the minimum over integer distances 6.414997 at 236."
    v1=$(theory_part decay)
    f2=$out/decay/fig2.tsv
    if [ -s "$f2" ]; then
        v2=$(awk -F'\t' -v doc="$doc" '
        BEGIN {
            split("0 1 2 5 8 10 20 50 100 150 183 200 236 256", D, " ")
            split("32.500000 31.538166 28.955988 20.845358 19.817395 17.954137 15.242430 12.629452 10.227330 7.588477 10.720227 7.244771 6.414997 6.543097", R, " ")
            nd = 14; tol = 6e-7    # the reference values are rounded to 6 decimals
        }
        /^#/ { next }
        !h { h = 1; for (i = 1; i <= NF; i++) c[$i] = i; next }
        {
            x = $c["distance"] + 0; b = $c["bound"] + 0; B[x ""] = b
            if (x == int(x) && x >= 0 && x <= 256 && (!have || b < bmin)) { have = 1; bmin = b; xmin = x }
            if (!hg || b < gmin) { hg = 1; gmin = b; gx = x }
        }
        END {
            print "P\t**ropekit decay** (`decay/fig2.tsv`), B at the checkpoints of `docs/theory.md#figure-2` (tolerance 6e-7: the references are rounded to 6 decimals):" >> doc
            print "TH\tdistance\treference (docs/theory.md)\tmeasured\t|difference|\tresult" >> doc
            bad = 0
            for (i = 1; i <= nd; i++) {
                k = D[i] ""
                if (!(k in B)) { print "TR\t" k "\t" R[i] "\tmissing\t\tFAIL" >> doc; bad++; continue }
                e = B[k] - R[i]; if (e < 0) e = -e
                r = e <= tol ? "PASS" : "FAIL"; if (r == "FAIL") bad++
                printf "TR\t%s\t%s\t%.9f\t%.2g\t%s\n", k, R[i], B[k], e, r >> doc
            }
            e = bmin - 6.414997; if (e < 0) e = -e
            r = (e <= tol && xmin == 236) ? "PASS" : "FAIL"; if (r == "FAIL") bad++
            printf "TR\tminimum over 0..256 (integers)\t6.414997 at 236\t%.9f at %g\t%.2g\t%s\n", bmin, xmin, e, r >> doc
            e = B["0"] - 32.5; if (e < 0) e = -e
            r = e <= 1e-12 ? "PASS" : "FAIL"; if (r == "FAIL") bad++
            printf "TR\tB(0) = (d/2 + 1)/2\t32.5 exactly\t%.12g\t%.2g\t%s\n", B["0"], e, r >> doc
            printf "P\tOn the whole grid of the table (step %s) the lowest value is %.9f at %g; B falls from %g at 0 to %.6f at 256 (a factor %.2f).\n",
                   "0.25", gmin, gx, B["0"], B["256"], B["0"] / B["256"] >> doc
            printf (bad ? "FAIL" : "PASS")
        }' "$f2")
    else
        emit P "**ropekit decay**: not run (no \`decay/fig2.tsv\`)."
        v2="NOT RUN"
    fi
    # violations of (37) over the random draws, and what the scores themselves do
    sn=$out/decay/scores_normal.tsv; ss=$out/decay/scores_same.tsv
    if [ -s "$sn" ] && [ -s "$ss" ]; then
        v3=$(awk -F'\t' -v doc="$doc" '
        FNR == 1 { f++; h = 0; if (match($0, /draws=[0-9]+/)) draws[f] = substr($0, RSTART + 6, RLENGTH - 6) + 0
                   if (match($0, /dist=[a-z]+/)) dist[f] = substr($0, RSTART + 5, RLENGTH - 5) }
        /^#/ { next }
        !h { h = 1; delete c; for (i = 1; i <= NF; i++) c[$i] = i; next }
        {
            viol[f] += $c["violations"]; rows[f]++; d = $c["distance"] + 0
            if (rows[f] == 1) { d0[f] = d; a0[f] = $c["abs_median"]; s0[f] = $c["score_mean"]; b0[f] = $c["perdraw_bound_median"] }
            d1[f] = d; a1[f] = $c["abs_median"]; s1[f] = $c["score_mean"]; b1[f] = $c["perdraw_bound_median"]
        }
        END {
            print "P\tThe bound (37) against random q, k (`decay/scores_normal.tsv`: q, k independent N(0, 1); `decay/scores_same.tsv`: q = k):" >> doc
            print "TH\tinputs\tdraws x distances\tviolations of (37)\tmedian |score| (normal) or mean score (q = k), first -> last distance\tmedian per-draw bound (37), first -> last\tresult" >> doc
            bad = 0
            for (i = 1; i <= 2; i++) {
                r = viol[i] == 0 && rows[i] > 0 ? "PASS" : "FAIL"; if (r == "FAIL") bad++
                if (i == 1) sc = sprintf("%.4g -> %.4g (distance %g -> %g)", a0[i], a1[i], d0[i], d1[i])
                else sc = sprintf("%.4g -> %.4g (distance %g -> %g)", s0[i], s1[i], d0[i], d1[i])
                printf "TR\t%s\t%d x %d\t%d\t%s\t%.4g -> %.4g\t%s\n", dist[i], draws[i], rows[i], viol[i], sc, b0[i], b1[i], r >> doc
            }
            print "P\tNote: (37) bounds the score; it does not make it decay. For independent q, k the typical |score| stays about the same at every distance (the left panel of the scores figure); for q = k the mean score does fall with distance." >> doc
            printf (bad ? "FAIL" : "PASS")
        }' "$sn" "$ss")
    else
        emit P "**ropekit decay --draws**: not run (no \`decay/scores_*.tsv\`)."
        v3="NOT RUN"
    fi
    v=$(worst "$v1" "$v2" "$v3")
    emit P "**Verdict: $v.**"
    img decay/fig2.png "RoFormer Figure 2 recomputed: B(distance) for d = 128, base 10000 (left: the whole curve; right: the paper's clipped view)"
    img decay/scores.png "Scores of random q, k against the bound (37): independent q, k (left) and q = k (right)"
    img decay/bases.png "The bound B for several bases and for the linear, NTK and YaRN scalings of base 10000"
    printf '%s\t%s\t%s\n' 2 "$v" "Decay bound (36)-(37) and Figure 2: 14 checkpoints of B, violations of (37) over random draws" >> "$tmp/verdicts"
}

# ---- the approx table --------------------------------------------------------------------------
atsv=$out/approx/approx.tsv
# approx_rows VARIANT [KERNEL]: table of the fitted slopes (output error vs m).
approx_rows() {
    awk -F'\t' -v want="$1" -v kern="${2:-}" -v doc="$doc" '
    /^# summary\tslope\t/ {
        if ($3 !~ ("^(" want ")$") || (kern != "" && $4 != kern)) next
        if (!n++) print "TH\tvariant\tkernel\tprojection\t|q| = |k|\toutput-error slope [95% CI]\tholds -1/2\trow-sum slope\tm for error 0.05" >> doc
        s = ($8 != "nan") ? sprintf("%.3f [%.3f, %.3f]", $7, $8, $9) : sprintf("%.3f", $7)
        hold = ($8 != "nan") ? (($8 + 0 <= -0.5 && -0.5 <= $9 + 0) ? "yes" : "no") : "no interval"
        rs = ($12 != "nan") ? sprintf("%.3f [%.3f, %.3f]", $11, $12, $13) : sprintf("%.3f", $11)
        mt = ($15 == "nan" || $15 == "inf") ? "not reached" : ($15 + 0 > 1e6 ? "> 1e6" : sprintf("%.0f", $15))
        printf "TR\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", $3, $4, $5, $6, s, hold, rs, mt >> doc
    }' "$atsv"
}

# ---- claim 3: eq. 19, RoPE with linear attention ---------------------------------------------
claim_eq19() {
    emit H2 "3. Eq. 19: RoPE with linear attention"
    emit P "**Claim.** RoPE combines with linear attention by rotating the features in the numerator only: \`Att_m = sum_n (R_m phi(q_m))^T (R_n phi(k_n)) v_n / sum_n phi(q_m)^T phi(k_n)\`. The numerator weights are exactly relative (shift invariant), the denominator stays positive, and the linear-time (prefix-sum) form equals the O(N^2) sum."
    v1=$(theory_part eq19)
    v2=$(pattern_part eq19)
    if [ -s "$atsv" ]; then
        emit P "**ropekit approx**, the RoPE forms of FAVOR+ against exact softmax + RoPE (positive features; the error of \`performer-rope-qk\`, RoPE before the feature map as in performer-pytorch, falls like \`m^-1/2\`; eq. 19 (\`performer-rope-features\`) is a different attention, not an estimator of softmax + RoPE, so its error against it hardly falls with m; for information, not part of the verdict):"
        approx_rows "performer-rope-qk|performer-rope-features" positive
    fi
    v=$(worst "$v1" "$v2")
    emit P "**Verdict: $v.**"
    img pattern/pattern_score.png "Attention score against relative distance: logits of the softmax family; numerator weights of the FAVOR+ family (bottom row: eq. 19, RoPE before the map, FFT bias)"
    img approx/rope_m.png "Output error against m of the RoPE forms of FAVOR+ (eq. 19 and RoPE before the map) against softmax + RoPE"
    printf '%s\t%s\t%s\n' 3 "$v" "Eq. 19 (RoPE with linear attention): theory checks (shift invariance, positive denominator, linear = quadratic form); shift test (ropekit pattern)" >> "$tmp/verdicts"
}

# ---- claim 4: linear scaling -----------------------------------------------------------------
claim_scaling() {
    emit H2 "4. Linear attention scales linearly with the sequence length"
    emit P "**Claim.** Linear attention (FAVOR+, elu+1; with RoPE by eq. 19 or before the map) costs O(n) time in the sequence length n, exact softmax attention O(n^2); so the linear forms overtake exact attention beyond some length. Measured: the median time per execute against n, and the fitted exponent b of \`t = a n^b\` with its 95% interval; the growth order of a form is confirmed only when the fit used at least $MIN_SIZES lengths, its interval excludes the competing exponent (2 for a linear form, 1 for exact attention), and it contains the expected exponent (1 or 2) or lies wholly within $EXP_TOL of it (**close**: the order holds, constant-factor effects such as caches bend the curve slightly over this short range of n); otherwise the form is NOT CONFIRMED. The claim holds when every form is confirmed."
    stsv=$out/scaling/scaling.tsv
    if [ ! -s "$stsv" ]; then
        emit P "**ropekit scaling**: not run (no \`scaling/scaling.tsv\`)."
        v="NOT RUN"; note="not run"
    else
        res=$(awk -F'\t' -v doc="$doc" -v tol="$EXP_TOL" -v minpts="$MIN_SIZES" '
        function fail(why) { ok = "**no**: " why; bad++; list = list (list != "" ? "; " : " ") sprintf("%s %s (%s)", $3, $4, why) }
        NR == 1 { cfg = $0; sub(/^# /, "", cfg) }
        /^# summary\texponent\t/ {
            if (!n++) print "TH\tvariant\tmask\texpected\tcompeting\texponent b [95% CI]\tfitted over n\tconfirmed" >> doc
            want = $12 + 0; comp = (want >= 2) ? 1 : 2
            if ($6 == "nan" || $7 == "nan") fail("no interval")
            else if ($11 + 0 < minpts) fail(sprintf("%d lengths, fewer than %d", $11, minpts))
            else if ($6 + 0 <= comp && comp <= $7 + 0) fail(sprintf("%.2f [%.2f, %.2f] contains the competing %d", $5, $6, $7, comp))
            else if ($6 + 0 <= want && want <= $7 + 0) ok = "yes"
            else if ($6 + 0 >= want - tol && $7 + 0 <= want + tol) { ok = "close"; nclose++ }
            else fail(sprintf("%.2f [%.2f, %.2f]", $5, $6, $7))
            b = ($6 != "nan") ? sprintf("%.2f [%.2f, %.2f]", $5, $6, $7) : sprintf("%.2f", $5)
            rng = ($9 != "nan" && $11 + 0 > 0) ? sprintf("%s..%s (%s points)", $9, $10, $11) : sprintf("%s points", $11 + 0)
            printf "TR\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", $3, $4, $12, comp, b, rng, ok >> doc
            if ($5 != "nan") { if ($12 + 0 < 2) { if (!hl || $5 + 0 > lmax) { lmax = $5 + 0; lv = $3 " " $4; hl = 1 } } else if (!he || $5 + 0 < emin) { emin = $5 + 0; ev = $3 " " $4; he = 1 } }
            next
        }
        /^# summary\tcrossover\t/ {
            X[++nx] = sprintf("TR\t%s\t%s\t%s\t%s\t%s", $3, $4, $5,
                ($6 != "nan") ? sprintf("%.0f", $6) : "not within the measured lengths",
                ($7 != "nan" && $8 != "nan") ? sprintf("[%.0f, %.0f]", $7, $8) : "")
        }
        END {
            if (!n) { print "P\tThe table has no fitted exponents." >> doc; print "NOT RUN\tno fits"; exit }
            if (nx) {
                print "P\tWhere each linear form becomes faster than its exact reference (interpolated between measured lengths; range from the medians'"'"' 95% CIs):" >> doc
                print "TH\tvariant\tmask\texact reference\tfaster from n =\trange" >> doc
                for (i = 1; i <= nx; i++) print X[i] >> doc
            }
            if (hl && he) printf "P\tThe steepest linear form: %s, b = %.2f; the flattest exact one: %s, b = %.2f.\n", lv, lmax, ev, emin >> doc
            if (bad) printf "NOT CONFIRMED\t%d of %d forms not confirmed:%s.", bad, n, list
            else if (nclose) printf "PASS\tall %d forms confirmed, %d of them within %s of the expected exponent but not containing it", n, nclose, tol
            else printf "PASS\tall %d intervals contain the expected exponent", n
        }' "$stsv")
        v=${res%%"$T"*}; note=${res#*"$T"}
        emit P "Settings: \`$(sed -n '1s/^# //p' "$stsv")\`."
        bz=$(sed -n "s/^busy=//p" "$out/scaling/.stamp" 2>/dev/null || true)
        case $bz in ''|-|'?') bz="" ;; esac
        if [ -n "$bz" ] && awk -v b="$bz" 'BEGIN { exit !(b + 0 > 0.25) }'; then
            emit P "**Note:** other processes kept $bz of the $(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?') cores busy just before this step started (measured over one second), so these timings are unreliable: an OpenMP thread that shares its core with another process holds up the others at every synchronisation. Rerun on a quiet machine: \`make paper FORCE=1\`."
        elif [ -n "$bz" ]; then
            emit P "The machine was quiet when this step started (other processes kept $bz cores busy)."
        fi
        case $note in *within*) emit P "In this run $note." ;; esac
        if [ "$v" != PASS ]; then
            emit P "In this run $note Timings depend on the machine and its load (other processes, frequency scaling, caches: a table that falls out of cache makes the curve steeper than n^1 over a short range of n); \`make paper FULL=1\` measures longer ranges with more repeats."
        fi
    fi
    emit P "**Verdict: $v.**"
    img scaling/time.png "Median time per execute against n (log-log) with the fitted lines; b and its 95% interval in the legend"
    img scaling/crossover.png "Time of each linear form over its exact reference's; below 1 it is faster"
    img scaling/memory.png "The plan's working memory and the peak resident set size against n"
    img scaling/throughput.png "Tokens per second against n"
    printf '%s\t%s\t%s\n' 4 "$v" "Linear scaling: fitted time exponents (${note%%:*})" >> "$tmp/verdicts"
}

# ---- orthogonal against iid projections, as the intervals show it -----------------------------
# For each kernel, at the smallest norm of the table, the `performer` rows' output errors with
# orthogonal and with iid projections at each m: lower with disjoint 95% intervals, or
# overlapping. The text claims a difference only where the intervals are disjoint.
ortho_part() {
    awk -F'\t' -v doc="$doc" '
    /^#/ { next }
    !h { h = 1; for (i = 1; i <= NF; i++) c[$i] = i; next }
    $c["variant"] == "performer" {
        r = $c["norm"] + 0; if (!hr || r < rmin) rmin = r; hr = 1
        k = $c["kernel"]; if (!(k in sk)) { sk[k] = 1; K[++nk] = k }
        key = k SUBSEP r SUBSEP $c["m"] SUBSEP $c["proj"]
        lo[key] = $c["out_err_lo"]; hi[key] = $c["out_err_hi"]; ms[k SUBSEP r SUBSEP $c["m"]] = $c["m"] + 0
    }
    END {
        if (!nk) exit
        for (i = 1; i <= nk; i++) {
            k = K[i]; n = 0; ol = 0; il = 0; ov = 0; first = ""
            for (g in ms) {
                split(g, f, SUBSEP); if (f[1] != k || f[2] + 0 != rmin) continue
                a = k SUBSEP f[2] SUBSEP f[3] SUBSEP "orthogonal"; b = k SUBSEP f[2] SUBSEP f[3] SUBSEP "iid"
                if (!(a in lo) || !(b in lo) || lo[a] == "nan" || lo[b] == "nan") continue
                n++
                if (hi[a] + 0 < lo[b] + 0) { ol++; if (first == "" || ms[g] < first) first = ms[g] }
                else if (hi[b] + 0 < lo[a] + 0) il++
                else ov++
            }
            if (!n) continue
            if (ol == n) says = "orthogonal lower at every m"
            else if (il == n) says = "iid lower at every m"
            else if (ov == n) says = "no difference shown at any m (the intervals overlap)"
            else says = sprintf("orthogonal lower at %d of %d m%s; iid lower at %d; no difference shown at %d", ol, n, ol ? sprintf(" (from m = %d)", first) : "", il, ov)
            R[++nr] = sprintf("TR\t%s\t%d\t%d\t%d\t%d\t%s", k, n, ol, il, ov, says)
        }
        if (!nr) exit
        printf "P\tOrthogonal against iid projections in the figure below (`performer`, output error at |q| = %g, 95%% intervals of the mean over seeds): a difference is claimed only where the intervals are disjoint.\n", rmin >> doc
        print "TH\tkernel\tm compared\torthogonal lower\tiid lower\tintervals overlap\twhat the figure shows" >> doc
        for (i = 1; i <= nr; i++) print R[i] >> doc
    }' "$atsv"
}

# ---- claim 5: FAVOR+ accuracy ------------------------------------------------------------------
claim_favor() {
    emit H2 "5. FAVOR+ accuracy (Performer, used by RoFormer section 4.4)"
    emit P "**Claim.** Positive random features estimate the softmax kernel without bias (Lemma 1) with the mean squared error of Lemma 2, orthogonal projections lower it (Theorem 2), so the attention error falls like \`m^-1/2\` in the number of features m. Verdict: the theory rows, and the fitted slope of the output error of \`performer\` with positive features (iid and orthogonal) at the smallest input norm must hold -1/2 in its 95% interval."
    v1=$(theory_part favor)
    if [ -s "$atsv" ]; then
        emit P "**ropekit approx** (\`$(sed -n '1s/^# //p' "$atsv")\`): fitted slope of log(relative output error) against log(m), FAVOR+ against exact softmax:"
        approx_rows performer
        res=$(awk -F'\t' '
        /^# summary\tslope\tperformer\tpositive\t/ {
            r = $6 + 0; if (!(r in seen)) { seen[r] = 1; if (!have || r < rmin) { rmin = r; have = 1 } }
            L[++n] = $0
        }
        END {
            if (!n) { printf "NOT RUN\tno performer/positive fits"; exit }
            for (i = 1; i <= n; i++) {
                split(L[i], f, "\t"); if (f[6] + 0 != rmin) continue
                k++
                if (f[8] == "nan" || !(f[8] + 0 <= -0.5 && -0.5 <= f[9] + 0)) {
                    bad++; list = list (list != "" ? "; " : " ") sprintf("%s: %.3f [%.3f, %.3f]", f[5], f[7], f[8], f[9])
                } else ok = ok (ok != "" ? "; " : " ") sprintf("%s %.3f [%.3f, %.3f]", f[5], f[7], f[8], f[9])
            }
            if (bad) printf "NOT CONFIRMED\tat |q| = %g the slope interval excludes -1/2 for%s.", rmin, list
            else printf "PASS\tat |q| = %g the slopes hold -1/2:%s.", rmin, ok
        }' "$atsv")
        v2=${res%%"$T"*}; note=${res#*"$T"}
        emit P "At the smallest norm: $note Larger norms need more features (Lemma 2: the variance grows like \`exp(|x+y|^2)\`); the slopes at every norm are in the table above."
        ortho_part
    else
        emit P "**ropekit approx**: not run (no \`approx/approx.tsv\`)."
        v2="NOT RUN"; note="not run"
    fi
    v=$(worst "$v1" "$v2")
    emit P "**Verdict: $v.**"
    img approx/error_m.png "FAVOR+ error against m (log-log) per kernel, iid and orthogonal projections, with the fitted slopes (theory -1/2)"
    img approx/error_norm.png "Output and row-sum error against the input norm at a fixed m: the exponential growth of Lemma 2"
    printf '%s\t%s\t%s\n' 5 "$v" "FAVOR+ accuracy: Lemma 1, Lemma 2, Theorem 2 rows; error slope vs m (${note%.})" >> "$tmp/verdicts"
}

# ---- claims 6 and 7: training a language model (ropekit train --compare) ------------------------
# The verdicts are the tool's own, read from train/claims.tsv (experiments/train_report.c: PASS
# only when the claim's paired interval at the reported step lies below zero, i.e. RoPE lower);
# the report shows them with their numbers and decides nothing itself. A claim is NOT RUN when the
# step failed, the table is missing, or it has no primary row for the claim.
train_claims="6:performer 7:softmax"   # summary number : the claim column of claims.tsv
train_claim_text() {
    case $1 in
        performer) printf 'RoPE speeds up Performer LM training' ;;
        softmax) printf 'RoFormer trains faster than absolute positions' ;;
    esac
}
# step_status STEP: ran, skipped, redrawn or failed in this run's steps.tsv (empty if absent).
step_status() {
    [ -s "$out/steps.tsv" ] || return 0
    awk -F'\t' -v s="$1" '$1 == s { print $2 }' "$out/steps.tsv"
}
# train_verdict N ID VERDICT NOTE [SHORT]: the verdict paragraph of one claim and its summary
# line (SHORT: the numbers for the summary, else NOTE).
train_verdict() {
    t=$(train_claim_text "$2")
    emit P "Claim $1, $t: **Verdict: $3.** $4"
    printf '%s\t%s\t%s\n' "$1" "$3" "$t (Figure 3): ${5:-$4}" >> "$tmp/verdicts"
}
claim_train() {
    emit H2 "6-7. Training a language model: RoPE against absolute positions (Figure 3)"
    emit P "**Claims.** 6: RoPE makes a Performer language model converge faster (section 4.4, Figure 3 right: Enwik8 loss of a Performer with and without RoPE). 7: RoFormer trains faster than learned absolute positions (section 4.2, Figure 3 left: masked LM loss against BERT). Measured here in small: byte-level causal transformer LMs on Debian's fortunes (\`ropekit train --compare\`), each RoPE arm against the same model with learned absolute positions; every arm trains with the same seeds (initialisation, data order, FAVOR+ draws), so the difference in validation bits per character is paired seed by seed. The verdicts are \`ropekit train\`'s own (\`train/claims.tsv\`): **PASS** only if the interval of the paired difference RoPE minus baseline at the reported step lies below zero; **NOT CONFIRMED** otherwise. The pair that decides (\`primary\` in the table) is performer-rope-qk - performer (RoPE before the feature map, as in performer-pytorch, the code behind Figure 3 right) and softmax-rope - softmax."
    tdir=$out/train
    ctsv=$tdir/claims.tsv
    why=""
    if [ "$(step_status train)" = failed ]; then why="the step failed (see \`train/run.log\`)"
    elif [ ! -s "$ctsv" ]; then why="not run (no \`train/claims.tsv\`)"
    fi
    if [ -n "$why" ]; then
        emit P "**ropekit train --compare**: $why."
        for c in $train_claims; do train_verdict "${c%%:*}" "${c#*:}" "NOT RUN" "The train step did not finish."; done
    else
        cfg=$(sed -n '1s/^# //p' "$ctsv")
        [ -z "$cfg" ] || emit P "Settings: \`$cfg\`."
        [ -s "$tdir/command.txt" ] && emit PRE "$(sed -n 1p "$tdir/command.txt")"
        # the interval's level as the tool printed it (--level; 95% by default)
        pstsv=$tdir/paired_seeds.tsv
        [ -s "$pstsv" ] || pstsv=/dev/null
        lvl=$(sed -n 's/^claim: .*, \([0-9.]*%\) CI over .*/\1/p' "$tdir/summary.txt" 2>/dev/null | head -n 1)
        awk -F'\t' -v doc="$doc" -v claims="$train_claims" -v lvl="${lvl:-confidence}" '
        function d(x) { return x == "nan" ? "nan" : sprintf("%+.3f", x) }
        function iv(lo, hi) { return lo == "nan" ? "none" : sprintf("[%s, %s]", d(lo), d(hi)) }
        FNR == 1 { h = 0 }
        /^#/ { next }
        !h { h = 1; delete c; for (i = 1; i <= NF; i++) c[$i] = i; next }
        FILENAME == ps {   # the differences seed by seed (paired_seeds.tsv), read first
            k = $c["arm"] SUBSEP $c["baseline"] SUBSEP $c["step"]
            t = (k in P) ? P[k] ", " : ""   # (not inline: mawk makes P[k] before the right side)
            P[k] = t sprintf("%+.3f", $c["diff"])
            next
        }
        {
            id = $c["claim"]; pair = $c["arm"] " - " $c["baseline"]
            row = sprintf("`%s`\t%s\t%s\t%s\t%s", pair, $c["step"], $c["seeds"], d($c["mean_diff"]), iv($c["ci_lo"], $c["ci_hi"]))
            if ($c["primary"] == 1 && !(id in V)) {
                V[id] = $c["verdict"]; R[id] = row
                if ($c["seeds"] + 0 < 2) why = "an interval needs at least 2 seeds"
                else if ($c["ci_hi"] + 0 < 0) why = "the interval lies below zero (RoPE ahead)"
                else if ($c["ci_lo"] + 0 > 0) why = "the interval lies above zero (RoPE behind)"
                else why = "the interval contains zero"
                S[id] = sprintf("%s = %s %s bits per character at step %s", pair, d($c["mean_diff"]), iv($c["ci_lo"], $c["ci_hi"]), $c["step"])
                k = $c["arm"] SUBSEP $c["baseline"] SUBSEP $c["step"]
                N[id] = sprintf("%s (%s interval over %s seeds%s): %s.", S[id], lvl, $c["seeds"],
                                (k in P) ? "; seed by seed " P[k] : "", why)
            } else O[++no] = row
        }
        END {
            n = split(claims, C, " ")
            printf "P\tThe claims at the reported step (difference in validation bits per character, RoPE arm minus baseline; below zero RoPE is ahead; %s intervals over the seeds):\n", lvl >> doc
            print "TH\tclaim\tprimary pair\tstep\tseeds\tmean difference\tinterval\tverdict" >> doc
            for (i = 1; i <= n; i++) {
                k = index(C[i], ":"); num = substr(C[i], 1, k - 1); id = substr(C[i], k + 1)
                v = (id in V) ? V[id] : ""; note = N[id]
                if (!(id in V)) { v = "NOT RUN"; note = "`train/claims.tsv` has no primary row for this claim (an arm or its baseline was not trained)." }
                else if (v != "PASS" && v != "NOT CONFIRMED") { note = "`train/claims.tsv` gives the unknown verdict \"" v "\"."; v = "NOT RUN" }
                print "TR\t" num "\t" (id in R ? R[id] : "(none)\t\t\t\t") "\t" v >> doc
                printf "%s\t%s\t%s\t%s\t%s\n", num, id, v, note, (v == "NOT RUN") ? "" : S[id]
            }
            if (no) {   # after the verdicts (a file of its own)
                print "P\tThe other RoPE arms against their baselines (for information, not part of a verdict):" > other
                print "TH\tpair\tstep\tseeds\tmean difference\tinterval" > other
                for (i = 1; i <= no; i++) print "TR\t" O[i] > other
            }
        }' other="$tmp/train_other.doc" ps="$pstsv" "$pstsv" "$ctsv" > "$tmp/train_verdicts"
        while IFS="$T" read -r n id v note short; do
            train_verdict "$n" "$id" "$v" "$note" "$short"
        done < "$tmp/train_verdicts"
        [ ! -s "$tmp/train_other.doc" ] || cat "$tmp/train_other.doc" >> "$doc"
        rstep=$(awk -F'\t' '/^#/ { next } !h { h = 1; for (i = 1; i <= NF; i++) c[$i] = i; next } { print $c["step"]; exit }' "$ctsv")
        if [ -s "$tdir/curves.tsv" ] && [ -n "$rstep" ]; then
            awk -F'\t' -v doc="$doc" -v st="$rstep" '
            /^#/ { next }
            !h { h = 1; for (i = 1; i <= NF; i++) c[$i] = i; next }
            $c["step"] == st {
                if (!n++) { printf "P\tValidation bits per character of every arm at step %s (mean and interval over the seeds):\n", st >> doc
                            print "TH\tarm\tvariant\tabsolute positions\tseeds\tbits per character\tinterval" >> doc }
                printf "TR\t`%s`\t%s\t%s\t%s\t%.3f\t[%.3f, %.3f]\n", $c["arm"], $c["variant"], $c["pe"], $c["seeds"], $c["mean_bpc"], $c["ci_lo"], $c["ci_hi"] >> doc
            }' "$tdir/curves.tsv"
        fi
    fi
    img train/bpc.png "Validation bits per character against step: mean over the seeds and its confidence band, one colour per arm (Figure 3 right, in small)"
    img train/paired.png "Each RoPE arm minus its baseline, paired seed by seed: mean and band; below zero RoPE is ahead"
    emit P "For information (not part of a verdict): each final model evaluated at 1x to 8x the training length with the RoPE scalings none, linear, NTK and YaRN (learned positions stop at 1x), and the training throughput."
    img train/extrapolation.png "Validation bits per character against evaluation length, one panel per arm, one line per RoPE scaling"
    img train/timing.png "Training throughput (tokens/s) and the share of step time of each part, per arm"
}

# ---- build the claims (each into its own part, the summary first) --------------------------------
: > "$tmp/verdicts"
for c in relative decay eq19 scaling favor train; do
    doc=$tmp/claim_$c.doc
    : > "$doc"
    claim_$c
done

# ---- machine, versions, seeds, steps, commands -----------------------------------------------
doc=$tmp/tail.doc
: > "$doc"
hdr() { # first '# <key>:' line of the TSVs that have one
    for f in "$out/scaling/scaling.tsv" "$out/approx/approx.tsv"; do
        [ -s "$f" ] || continue
        l=$(sed -n "s/^# $1: //p" "$f" | head -n 1)
        [ -n "$l" ] && { printf '%s' "$l"; return; }
    done
    return 0
}
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
[ -n "$cpu" ] || cpu=$(uname -m)
cores=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?')
memk=$(sed -n 's/^MemTotal:[[:space:]]*\([0-9]*\) kB/\1/p' /proc/meminfo 2>/dev/null | head -n 1)
os=$(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release 2>/dev/null | head -n 1)
rkver=$("$rk" --version 2>/dev/null || echo '?')
gpver=$(gnuplot --version 2>/dev/null || echo '?')
ccver=$(cc --version 2>/dev/null | head -n 1 || echo '?')
pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo '?'; }

emit H2 "Machine and versions"
emit TH "item" "value"
emit TR "CPU" "$cpu ($cores logical cores)"
[ -n "$memk" ] && emit TR "memory" "$((memk / 1024)) MiB"
emit TR "system" "${os:-?}; $(uname -sr)"
m=$(hdr machine); [ -n "$m" ] && emit TR "as recorded by the timed runs" "\`$m\`"
emit TR "ropekit" "$rkver"
v=$(hdr versions); [ -n "$v" ] && emit TR "libraries (run time, recorded by the runs)" "\`$v\`"
b=$(hdr build); [ -n "$b" ] && emit TR "build" "\`$b\` (compiled_avx2/fma: instructions the compiler may use everywhere; run_time_kernels: the kernels the library's CPU dispatch runs on this machine)"
emit TR "Debian packages" "libgsl-dev $(pkgver libgsl-dev), libfftw3-dev $(pkgver libfftw3-dev), libopenblas-openmp-dev $(pkgver libopenblas-openmp-dev), gnuplot-nox $(pkgver gnuplot-nox)"
emit TR "gnuplot" "$gpver"
emit TR "compiler" "$ccver"

emit H2 "Seeds"
emit P "Every random input comes from GSL's mt19937 with a fixed seed, so a rerun on the same build gives the same numbers (timings aside)."
emit TH "step" "seeds (from the tables' configuration lines)"
seedof() { [ -s "$1" ] && sed -n '1{s/.*\(seed[s]\{0,1\}=[0-9]*\( seed=[0-9]*\)\{0,1\}\).*/\1/p;}' "$1" | head -n 1; }
[ -s "$out/theory/theory.tsv" ] && emit TR theory "$(seedof "$out/theory/theory.tsv" || true); check k draws from mt19937(seed + k); FAVOR+ plans use the seeds printed in their rows"
[ -s "$out/decay/scores_normal.tsv" ] && emit TR decay "$(seedof "$out/decay/scores_normal.tsv" || true) (draws=$(sed -n '1s/.* draws=\([0-9]*\).*/\1/p' "$out/decay/scores_normal.tsv" 2>/dev/null)); Figure 2 and the bases have no randomness"
[ -s "$atsv" ] && emit TR approx "$(sed -n '1s/.*\(seeds=[0-9]* seed=[0-9]*\).*/\1/p' "$atsv" 2>/dev/null) (seeds seed .. seed + seeds - 1 per point)"
[ -s "$out/pattern/pattern.tsv" ] && emit TR pattern "$(seedof "$out/pattern/pattern.tsv" || true)"
[ -s "$out/scaling/scaling.tsv" ] && emit TR scaling "$(sed -n '1s/.*\(seed=[0-9]*\).*/\1/p' "$out/scaling/scaling.tsv" 2>/dev/null) (inputs and FAVOR+ projections)"
[ -s "$out/train/runs.tsv" ] && emit TR train "$(sed -n '1s/.*\(seeds=[0-9]*\.\.[0-9]*\).*/\1/p' "$out/train/runs.tsv" 2>/dev/null): each seed fixes a run's initialisation, data order and FAVOR+ draws, the same for every arm"

emit H2 "Steps of this run"
emit TH "step" "settings" "this run" "time (s)" "cores busy with other work at its start" "output"
if [ -s "$out/steps.tsv" ]; then
    while IFS="$T" read -r s st sec a; do
        [ "$s" = step ] && continue
        case $st in
            ran) st="ran" ;; redrawn) st="figures redrawn from the up-to-date table" ;;
            skipped) st="up to date (not rerun; FORCE=1 reruns)" ;;
            failed) st="**FAILED** (see \`$s/run.log\`)" ;; missing) st="**missing** in this build" ;;
        esac
        [ "$a" = - ] && a="(fixed)"
        bz=$(sed -n "s/^busy=//p" "$out/$s/.stamp" 2>/dev/null || true)
        emit TR "$s" "\`$a\`" "$st" "$sec" "${bz:--}" "\`$s/\`"
    done < "$out/steps.tsv"
fi

emit H2 "Reproducing each figure"
emit P "All of it: \`make paper\` (\`make paper FULL=1\` for the thorough settings, \`FORCE=1\` to rerun finished steps). One step: the command in its first line below (the plot scripts run ropekit and then gnuplot). The ropekit commands each step ran are listed as they were run (from \`<step>/commands.log\`). The number of OpenMP threads is all cores unless \`OMP_NUM_THREADS\` says otherwise; the seeds are above."
figs() { # step: its figures and the tables each reads
    case $1 in
        decay) echo "fig2:fig2.tsv scores:scores_normal.tsv,scores_same.tsv bases:bases.tsv,scalings.tsv" ;;
        approx) echo "error_m:approx.tsv rope_m:approx.tsv error_norm:approx.tsv" ;;
        scaling) echo "time:scaling.tsv memory:scaling.tsv throughput:scaling.tsv crossover:scaling.tsv" ;;
        pattern) for p in "$out"/pattern/*.png; do [ -f "$p" ] && printf '%s:* ' "$(basename "$p" .png)"; done ;;
        *) echo "" ;;
    esac
}
for s in theory decay approx pattern scaling train; do
    [ -d "$out/$s" ] || continue
    emit H3 "$s"
    if [ -s "$out/$s/command.txt" ]; then
        emit PRE "$(sed -n 1p "$out/$s/command.txt")"
    fi
    [ -s "$out/$s/commands.log" ] || continue
    list=$(figs "$s")
    [ "$s" = theory ] && continue
    if [ -z "$list" ]; then
        sed "s#$root/##g; s/ --resume//" "$out/$s/commands.log" | while IFS= read -r l; do emit PRE "$l"; done
        continue
    fi
    emit TH "figure" "ropekit command(s) behind it (then gnuplot: plots/$s*.gp)"
    for fl in $list; do
        f=${fl%%:*}; tabs=${fl#*:}
        [ -s "$out/$s/$f.png" ] || continue
        cmds=$(sed "s#$root/##g; s/ --resume//" "$out/$s/commands.log" | awk -v tabs="$tabs" '
            BEGIN { n = split(tabs, t, ",") }
            { for (i = 1; i <= n; i++) if (t[i] == "*" || index($0, "/" t[i])) { printf "%s`%s`", (k++ ? "; " : ""), $0; break } }')
        emit TR "\`$s/$f.png\` (\`.svg\`)" "$cmds"
    done
done

# ---- assemble: title, summary table, claims, the rest -----------------------------------------
doc=$tmp/report.doc
: > "$doc"
emit H1 "ropekit: the RoFormer paper, checked"
when=$(date -u +%Y-%m-%dT%H:%M:%SZ)
emit P "Written by \`make paper\` at $when ($mode settings${secs:+, ${secs} s for this run}) with $rkver. Each claim of the paper below shows what was measured, the verdict derived from the tools' own outputs, and the figures; then the machine, versions, seeds and commands. The raw tables are beside this file in \`$outrel/\`."
emit P "Verdicts: **PASS** every check of the claim passed; **FAIL** a deterministic or statistically controlled check contradicts it; **NOT CONFIRMED** a measurement (a timing exponent, a fitted slope, a paired training interval) does not support it in this run; **NOT RUN** the step did not finish."
emit H2 "Summary"
emit TH "#" "claim" "verdict"
sort -n "$tmp/verdicts" | while IFS="$T" read -r n v e; do emit TR "$n" "$e" "$v"; done
for c in relative decay eq19 scaling favor train; do cat "$tmp/claim_$c.doc" >> "$doc"; done
cat "$tmp/tail.doc" >> "$doc"

# ---- render --------------------------------------------------------------------------------------
render() { # md | html
    awk -F'\t' -v fmt="$1" -v out="$out" '
    function shq(s) { gsub(/\047/, "\047\\\047\047", s); return "\047" s "\047" }   # sh single quotes
    function repl(s, a, b,   r, k) {   # every a in s replaced by b (no regex, no & magic)
        r = ""
        while ((k = index(s, a)) > 0) { r = r substr(s, 1, k - 1) b; s = substr(s, k + length(a)) }
        return r s
    }
    function esc(s) {
        s = repl(s, "&", "&amp;"); s = repl(s, "<", "&lt;"); s = repl(s, ">", "&gt;")
        return repl(s, "\"", "&quot;")
    }
    function mdtext(s,   r) {   # literal text for Markdown: escape what would be markup
        s = repl(s, "\\", "\\\\"); s = repl(s, "*", "\\*"); if (index(s, "](")) s = repl(s, "[", "\\[")
        s = repl(s, "`", "\\`"); s = repl(s, "~", "\\~"); s = repl(s, "$", "\\$")
        if (incell) s = repl(s, "|", "\\|")
        r = ""
        while (match(s, /<[A-Za-z\/!?]/)) { r = r substr(s, 1, RSTART - 1) "\\<"; s = substr(s, RSTART + 1) }
        return r s
    }
    function lit(s) { return fmt == "md" ? mdtext(s) : esc(s) }
    function vclass(s) {
        if (s == "PASS") return "pass"; if (s == "FAIL") return "fail"
        if (s == "NOT CONFIRMED") return "nc"; if (s == "NOT RUN") return "nr"; if (s == "INFO") return "info"
        return ""
    }
    function plain(s,   r, k, j, inner, t, cl) {   # text with **bold**
        r = ""
        while ((k = index(s, "**")) > 0 && (j = index(substr(s, k + 2), "**")) > 0) {
            r = r lit(substr(s, 1, k - 1))
            inner = substr(s, k + 2, j - 1)
            if (fmt == "md") r = r "**" lit(inner) "**"
            else {
                t = inner; sub(/^Verdict: /, "", t); sub(/\.$/, "", t); cl = vclass(t)
                r = r (cl != "" ? "<strong class=\"v " cl "\">" : "<strong>") esc(inner) "</strong>"
            }
            s = substr(s, k + j + 3)
        }
        return r lit(s)
    }
    function inline(s,   r, k, j, code) {   # `code` spans, then plain text
        r = ""
        while ((k = index(s, "`")) > 0 && (j = index(substr(s, k + 1), "`")) > 0) {
            r = r plain(substr(s, 1, k - 1))
            code = substr(s, k + 1, j - 1)
            if (fmt == "md") r = r "`" (incell ? repl(code, "|", "\\|") : code) "`"
            else r = r "<code>" esc(code) "</code>"
            s = substr(s, k + j + 1)
        }
        return r plain(s)
    }
    function cell(s,   c, r) {
        c = vclass(s)
        if (c != "") return fmt == "md" ? "**" s "**" : "<span class=\"v " c "\">" esc(s) "</span>"
        incell = 1; r = inline(s); incell = 0
        return r
    }
    function close_blocks(next_kind) {
        if (inlist && next_kind != "UL") { print (fmt == "md" ? "" : "</ul>"); inlist = 0 }
        if (inpre && next_kind != "PRE") { print (fmt == "md" ? "```\n" : "</pre>"); inpre = 0 }
        if (intable && next_kind != "TR") { print (fmt == "md" ? "" : "</tbody></table></div>"); intable = 0 }
    }
    BEGIN {
        if (fmt == "html") {
            print "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">"
            print "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            print "<title>ropekit: the RoFormer paper, checked</title>\n<style>"
            print "body{font-family:system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;line-height:1.45;color:#222}"
            print "h1{border-bottom:2px solid #ccc;padding-bottom:.2em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.15em}"
            print "code,pre{font-family:ui-monospace,\"DejaVu Sans Mono\",monospace;font-size:.88em}code{background:#f3f3f3;padding:0 .2em;border-radius:3px}"
            print "pre{background:#f6f6f6;border:1px solid #e2e2e2;padding:.6em .8em;overflow-x:auto;white-space:pre-wrap;word-break:break-all}"
            print ".tw{overflow-x:auto}table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #d5d5d5;padding:.25em .5em;vertical-align:top;text-align:left}"
            print "th{background:#f0f0f0}tr:nth-child(even) td{background:#fafafa}"
            print "figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #ddd}figcaption{font-size:.9em;color:#555}.file{color:#888}"
            print ".v{font-weight:bold;padding:0 .3em;border-radius:3px;white-space:nowrap}.pass{color:#0a6b2b;background:#e3f5e8}.fail{color:#fff;background:#c62828}"
            print ".nc{color:#7a4b00;background:#fff0cc}.nr{color:#555;background:#e6e6e6}.info{color:#1f4e8c;background:#e5eefa}"
            print "</style>\n</head>\n<body>"
        }
    }
    {
        k = $1
        close_blocks(k)
        if (k == "H1" || k == "H2" || k == "H3") {
            n = substr(k, 2) + 0
            if (fmt == "md") { printf "%s %s\n\n", substr("###", 1, n), inline($2) }
            else printf "<h%d>%s</h%d>\n", n, inline($2), n
        } else if (k == "P") {
            if (fmt == "md") printf "%s\n\n", inline($2); else printf "<p>%s</p>\n", inline($2)
        } else if (k == "UL") {
            if (!inlist) { if (fmt == "html") print "<ul>"; inlist = 1 }
            if (fmt == "md") printf "- %s\n", inline($2); else printf "<li>%s</li>\n", inline($2)
        } else if (k == "PRE") {
            if (!inpre) { print (fmt == "md" ? "```sh" : "<pre>"); inpre = 1 }
            print (fmt == "md" ? $2 : esc($2))
        } else if (k == "TH") {
            if (fmt == "md") {
                l = "|"; s = "|"
                for (i = 2; i <= NF; i++) { l = l " " cell($i) " |"; s = s "---|" }
                print l; print s
            } else {
                l = "<div class=\"tw\"><table><thead><tr>"
                for (i = 2; i <= NF; i++) l = l "<th>" inline($i) "</th>"
                print l "</tr></thead><tbody>"
            }
            intable = 1
        } else if (k == "TR") {
            if (fmt == "md") { l = "|"; for (i = 2; i <= NF; i++) l = l " " cell($i) " |"; print l }
            else { l = "<tr>"; for (i = 2; i <= NF; i++) l = l "<td>" cell($i) "</td>"; print l "</tr>" }
        } else if (k == "IMG") {
            if (fmt == "md") printf "![%s](%s)\n\n*%s*\n\n", mdtext($3), $2, mdtext($3)
            else {
                # the PNG itself, base64 in a data: URI, so the page is one self-contained file
                # (it can be mailed or attached); data-file names the PNG beside the report
                b64 = ""; cmd = "base64 -w0 " shq(out "/" $2)
                while ((cmd | getline l) > 0) b64 = b64 l
                close(cmd)
                sv = $2; sub(/\.png$/, ".svg", sv)
                printf "<figure><img src=\"data:image/png;base64,%s\" alt=\"%s\" data-file=\"%s\"><figcaption>%s <span class=\"file\">(<code>%s</code>; vector: <code>%s</code>, beside the report)</span></figcaption></figure>\n", b64, esc($3), esc($2), esc($3), esc($2), esc(sv)
            }
        }
    }
    END { close_blocks(""); if (fmt == "html") print "</body>\n</html>" }' "$doc"
}
render md > "$out/REPORT.md.tmp"
render html > "$out/index.html.tmp"
mv "$out/REPORT.md.tmp" "$out/REPORT.md"
mv "$out/index.html.tmp" "$out/index.html"

# the verdicts on stdout, for the progress of make paper
sort -n "$tmp/verdicts" | while IFS="$T" read -r n v e; do
    printf 'paper: claim %s %-14s %s\n' "$n" "$v" "$e"
done
rm -rf "$tmp"
