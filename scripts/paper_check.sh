#!/bin/sh
# The end-to-end check of `make paper` (make paper-check runs a reduced paper first):
#   sh scripts/paper_check.sh [OUT]          (default out/paper)
# Fails (exit 1, every problem listed) unless:
#   - every expected file of every step exists and is non-empty (PNGs: a PNG signature),
#   - every step finished (its stamp exists),
#   - REPORT.md has its seven claims and no FAIL or NOT RUN verdict (NOT CONFIRMED, a timing,
#     fitted slope or paired training interval the run does not support, is printed as a
#     warning: it depends on the machine and the budget), and the training claims (6, 7) carry
#     the verdicts of train/claims.tsv,
#   - index.html is a whole, self-contained HTML document that embeds every PNG under OUT
#     (base64 data: URIs that decode to the files' bytes) and fetches nothing else.
set -eu
out=${1:-out/paper}
bad=0
problem() { echo "paper-check: FAIL: $*" >&2; bad=$((bad + 1)); }

[ -d "$out" ] || { echo "paper-check: no directory $out (run make paper first)" >&2; exit 1; }

expected="REPORT.md index.html steps.tsv
theory/theory.tsv theory/theory.txt
decay/fig2.tsv decay/scores_normal.tsv decay/scores_same.tsv decay/bases.tsv decay/scalings.tsv
decay/fig2.png decay/fig2.svg decay/scores.png decay/scores.svg decay/bases.png decay/bases.svg
approx/approx.tsv approx/summary.txt
approx/error_m.png approx/error_m.svg approx/rope_m.png approx/rope_m.svg
approx/error_norm.png approx/error_norm.svg
pattern/pattern.tsv pattern/pattern.png pattern/pattern.svg pattern/pattern_score.png pattern/pattern_score.svg
scaling/scaling.tsv scaling/summary.txt
scaling/time.png scaling/time.svg scaling/memory.png scaling/memory.svg
scaling/throughput.png scaling/throughput.svg scaling/crossover.png scaling/crossover.svg
train/runs.tsv train/curves.tsv train/paired.tsv train/paired_seeds.tsv train/claims.tsv
train/extrapolation.tsv train/extrapolation_summary.tsv train/timing.tsv train/summary.txt
train/bpc.png train/bpc.svg train/paired.png train/paired.svg
train/extrapolation.png train/extrapolation.svg train/timing.png train/timing.svg"
n=0
for f in $expected; do
    n=$((n + 1))
    if [ ! -e "$out/$f" ]; then problem "missing $out/$f"
    elif [ ! -s "$out/$f" ]; then problem "empty $out/$f"
    fi
done
for s in theory decay approx pattern scaling train; do
    [ -f "$out/$s/.stamp" ] || problem "step $s did not finish (no $out/$s/.stamp; see $out/$s/run.log)"
done

# Every PNG is a PNG, and the HTML shows it.
pngs=$(cd "$out" && find . -name '*.png' ! -path './.*' | sed 's#^\./##' | sort)
npng=0
for p in $pngs; do
    npng=$((npng + 1))
    sig=$(head -c 4 "$out/$p" | od -An -tx1 | tr -d ' \n')
    [ "$sig" = 89504e47 ] || problem "$out/$p is not a PNG"
    # embedded: the base64 of the <img> that names it decodes to the very bytes of the file
    b64=$(sed -n "s|.*<img src=\"data:image/png;base64,\([A-Za-z0-9+/=]*\)\" alt=\"[^\"]*\" data-file=\"$p\".*|\1|p" \
          "$out/index.html" 2>/dev/null | head -n 1)
    if [ -z "$b64" ]; then problem "index.html does not embed $p"
    elif ! printf '%s' "$b64" | base64 -d 2>/dev/null | cmp -s - "$out/$p"; then
        problem "index.html embeds a $p that differs from the file"
    fi
done
[ "$npng" -gt 0 ] || problem "no PNG under $out"
# self-contained: no image, script or style sheet is fetched from elsewhere
if grep -o '<img src="[^"]*"' "$out/index.html" 2>/dev/null | grep -qv '^<img src="data:image/png;base64,' ||
   grep -q '<script\|<link\|src="http' "$out/index.html" 2>/dev/null; then
    problem "index.html is not self-contained (an <img> not embedded, a <script> or a <link>)"
fi

if [ -s "$out/index.html" ]; then
    head -n 1 "$out/index.html" | grep -q '^<!DOCTYPE html>' || problem "index.html: no doctype"
    tail -n 1 "$out/index.html" | grep -q '^</html>' || problem "index.html: not closed (</html>)"
fi

# The verdicts: the Summary table's rows "| <n> | <claim> | **<VERDICT>** |".
if [ -s "$out/REPORT.md" ]; then
    verdicts=$(sed -n '/^## Summary/,/^## /s/^| \([0-9]\) | .* | \*\*\([A-Z ]*\)\*\* |$/\1 \2/p' "$out/REPORT.md")
    nclaims=$(printf '%s\n' "$verdicts" | grep -c '^[0-9]' || true)
    [ "$nclaims" -eq 7 ] || problem "REPORT.md: $nclaims claims in the summary, expected 7"
    printf '%s\n' "$verdicts" | while read -r c v; do
        [ -n "$c" ] || continue
        case $v in
            PASS) echo "paper-check: claim $c: PASS" ;;
            "NOT CONFIRMED") echo "paper-check: claim $c: NOT CONFIRMED (a measurement this run does not support; see REPORT.md)" ;;
            *) echo "paper-check: claim $c: $v" ;;
        esac
    done
    # the training claims carry ropekit train's own verdicts (the primary rows of claims.tsv)
    if [ -s "$out/train/claims.tsv" ]; then
        for c in 6:performer 7:softmax; do
            want=$(awk -F'\t' -v id="${c#*:}" '/^#/ { next } !h { h = 1; for (i = 1; i <= NF; i++) k[$i] = i; next }
                   $k["claim"] == id && $k["primary"] == 1 { print $k["verdict"]; exit }' "$out/train/claims.tsv")
            got=$(printf '%s\n' "$verdicts" | sed -n "s/^${c%%:*} //p")
            [ "$got" = "$want" ] || problem "REPORT.md: claim ${c%%:*} is '$got' but train/claims.tsv says '$want'"
        done
    fi
    nfail=$(printf '%s\n' "$verdicts" | grep -c ' FAIL$\| NOT RUN$' || true)
    [ "$nfail" -eq 0 ] || problem "REPORT.md: $nfail claim(s) FAIL or NOT RUN"
    # any FAIL elsewhere (a theory row, a checkpoint) must also have failed its claim
    if grep -q '| \*\*FAIL\*\* |' "$out/REPORT.md" && [ "$nfail" -eq 0 ]; then
        problem "REPORT.md: a FAIL row under a claim that is not FAIL"
    fi
fi

if [ "$bad" -gt 0 ]; then
    echo "paper-check: $bad problem(s) in $out" >&2
    exit 1
fi
echo "paper-check: $out complete: $n expected files, $npng PNGs embedded in index.html, no FAIL verdict"
