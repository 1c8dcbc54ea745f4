#!/bin/sh
# make paper: every theory check, experiment and figure of ropekit, and one report.
#   sh scripts/paper.sh                (what `make paper` runs, from the repository root)
# Steps, each into PAPER_OUT/<step>/ (the figures through the plots/<step>.sh scripts):
#   theory   ropekit theory (the paper's equations as PASS/FAIL checks)  theory.tsv, theory.txt
#   decay    plots/decay.sh: Figure 2, scores against the bound (37), bases and scalings
#   approx   plots/approx.sh: FAVOR+ error against m, kernel, projection, input norm
#   pattern  plots/pattern.sh: attention patterns of the position encodings, shift test (relative?)
#   scaling  plots/scaling.sh: time and memory against sequence length, fitted exponents
#   train    plots/train.sh: ropekit train --compare, Figure 3 (right) with error bars, and
#            length extrapolation (claims.tsv: the verdicts of the two training claims)
# then scripts/paper_report.sh writes PAPER_OUT/REPORT.md and PAPER_OUT/index.html.
# Environment:
#   ROPEKIT        the command line (default build/ropekit; make paper builds it first)
#   PAPER_OUT      output directory (default out/paper)
#   FULL=1         the thorough settings (long); default: the quick ones (minutes)
#   PAPER_SMOKE=1  even smaller settings, for the end-to-end check (make paper-check)
#   FORCE=1        rerun every step; by default a step is skipped when it finished before with
#                  the same settings, all its outputs exist, and its stamp is newer than ROPEKIT
#                  and the step's plot scripts. A step writes its stamp (PAPER_OUT/<step>/.stamp)
#                  only after it succeeded, so an interrupted step reruns (approx, scaling and
#                  train continue their tables with --resume).
# Progress: one line per step (with its elapsed time) on stdout; the tools' own progress lines
# on stderr; each step's standard output in PAPER_OUT/<step>/run.log.
# Exit status: 0 when every step ran (whatever the verdicts: see the report; make paper-check
# fails on a FAIL verdict), 1 when a step failed (the report marks its claims NOT RUN).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
rk=${ROPEKIT:-$root/build/ropekit}
out=${PAPER_OUT:-out/paper}
case $rk in /*) ;; *) rk=$(pwd)/$rk ;; esac
case $out in /*) ;; *) out=$(pwd)/$out ;; esac
FULL=${FULL:-}
FORCE=${FORCE:-}
PAPER_SMOKE=${PAPER_SMOKE:-}

die() { echo "paper: $*" >&2; exit 1; }
[ -x "$rk" ] || die "$rk is not built (run make)"
command -v gnuplot >/dev/null 2>&1 || die "gnuplot not found (apt-get install gnuplot-nox)"

if [ "$PAPER_SMOKE" = 1 ]; then mode=smoke
elif [ "$FULL" = 1 ]; then mode=full
else mode=quick
fi

# A path as shown in the report and the progress lines: relative to the repository if inside.
rel() { case $1 in "$root"/*) printf '%s' "${1#"$root"/}" ;; *) printf '%s' "$1" ;; esac; }

now() { date +%s; }

# ---- the settings of each step per mode (no spaces inside an argument) ---------------------
args_theory() {
    case $mode in full) echo "--seed 1" ;; smoke) echo "--quick --seed 1 --draws 20" ;;
                  *) echo "--quick --seed 1" ;; esac
}
args_decay() { echo "" ; }   # plots/decay.sh with its defaults: RoFormer's settings (seconds)
args_approx() {
    case $mode in full) echo "--seed 1" ;;
                  smoke) echo "--quick --seed 1 --m-max 256 --norms 1,2 --seeds 4 --n 64" ;;
                  *) echo "--quick --seed 1" ;; esac
}
args_pattern() {
    case $mode in full) echo "--seed 1" ;; *) echo "--quick --seed 1" ;; esac
}
args_scaling() {
    case $mode in full) echo "--seed 1" ;;
                  smoke) echo "--quick --seed 1 --n-max 4096 --fit-min 512" ;;
                  *) echo "--quick --seed 1" ;; esac
}
# quick: 20 runs of 400 steps (~4 min on 2 cores); smoke: every arm, table and figure with a
# tiny model (2 seeds: the fewest that give an interval), in seconds.
args_train() {
    case $mode in full) echo "--steps 1200 --seeds 5 --seed 1" ;;
                  smoke) echo "--seed 1 --seeds 2 --steps 40 --eval-every 10 --val-tokens 512 --layers 1 --d-model 16 --ctx 16 --batch 4 --features 16" ;;
                  *) echo "--quick --seed 1" ;; esac
}

# ---- the outputs that make a step complete (relative to its directory) ---------------------
outputs_theory()  { echo "theory.tsv theory.txt"; }
outputs_decay()   { echo "fig2.tsv fig2.png fig2.svg scores_normal.tsv scores_same.tsv scores.png scores.svg bases.tsv scalings.tsv bases.png bases.svg"; }
outputs_approx()  { echo "approx.tsv summary.txt error_m.png error_m.svg rope_m.png rope_m.svg error_norm.png error_norm.svg"; }
outputs_pattern() { echo "pattern.tsv pattern.png pattern.svg pattern_score.png pattern_score.svg"; }
outputs_scaling() { echo "scaling.tsv summary.txt time.png time.svg memory.png memory.svg throughput.png throughput.svg crossover.png crossover.svg"; }
outputs_train()   { echo "runs.tsv curves.tsv paired.tsv paired_seeds.tsv claims.tsv extrapolation.tsv extrapolation_summary.tsv timing.tsv summary.txt bpc.png bpc.svg paired.png paired.svg extrapolation.png extrapolation.svg timing.png timing.svg"; }

# The files whose change makes a step stale (besides ROPEKIT): its plot scripts and the shared
# ones (plots/common.sh, common.gp).
scripts_of() {
    ls "$root/plots/$1".sh "$root/plots/$1".gp "$root/plots/$1"_*.gp "$root/plots/common.sh" \
       "$root/plots/common.gp" 2>/dev/null || true
}

# ---- the runs: stdout goes to run.log (set by the caller); a nonzero status fails the step ---
run_theory() {
    st=0
    # shellcheck disable=SC2086
    "$shim" theory $args --tsv "$dir/theory.tsv" > "$dir/theory.txt" || st=$?
    echo "$st" > "$dir/exit_status"
    cat "$dir/theory.txt"
    [ "$st" -le 1 ]   # 1 = a check failed: a verdict for the report, not a broken step
}
run_decay() { ROPEKIT=$shim OUTDIR=$dir sh "$root/plots/decay.sh"; }
# shellcheck disable=SC2086
run_approx() { ROPEKIT=$shim OUTDIR=$dir sh "$root/plots/approx.sh" $args $resume; }
# shellcheck disable=SC2086
run_pattern() { ROPEKIT=$shim OUTDIR=$dir sh "$root/plots/pattern.sh" $args; }
# shellcheck disable=SC2086
run_scaling() { ROPEKIT=$shim OUTDIR=$dir sh "$root/plots/scaling.sh" $args $resume; }
# shellcheck disable=SC2086
run_train() { ROPEKIT=$shim OUTDIR=$dir sh "$root/plots/train.sh" $args $resume; }

# The steps whose tool continues an interrupted table (--resume): the table it appends to, and
# whether that table is complete (the tool wrote its summary: only then is a redraw enough).
table_of() {
    case $1 in approx|scaling) echo "$1.tsv" ;; train) echo runs.tsv ;; *) ;; esac
}
table_done() {
    case $1 in
        train) [ -s "$dir/claims.tsv" ] ;;   # written after the last run, with the summaries
        *) grep -q '^# summary' "$dir/$1.tsv" ;;
    esac
}

# Cores kept busy by other processes over one second (measured while this script waits): the
# timings of the scaling step are only meaningful on a quiet machine, and the report says so.
cpu_busy() {
    [ -r /proc/stat ] || { echo "?"; return 0; }
    a=$(sed -n 's/^cpu  *//p' /proc/stat)
    sleep 1
    b=$(sed -n 's/^cpu  *//p' /proc/stat)
    echo "$a $b" | awk -v n="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)" '{
        h = NF / 2    # user nice system idle iowait irq softirq steal [guest guest_nice]
        for (i = 1; i <= 8 && i <= h; i++) { t1 += $i; t2 += $(i + h) }
        i1 = $4 + $5; i2 = $(4 + h) + $(5 + h)
        dt = t2 - t1
        printf "%.2f\n", (dt > 0) ? n * (dt - (i2 - i1)) / dt : 0
    }'
}

# The command a reader types to redo a step (written to <step>/command.txt for the report).
command_of() {
    case $1 in
        theory) printf '%s theory %s --tsv %s/theory.tsv > %s/theory.txt' "$(rel "$rk")" \
                    "$args" "$(rel "$dir")" "$(rel "$dir")" ;;
        *) printf 'ROPEKIT=%s OUTDIR=%s sh plots/%s.sh%s' "$(rel "$rk")" "$(rel "$dir")" "$1" \
               "${args:+ $args}" ;;
    esac
}

# ---- the ropekit shim: logs every command a step runs (for "the exact commands") -----------
mkdir -p "$out/.bin"
shim=$out/.bin/ropekit
{
    echo '#!/bin/sh'
    echo '# Written by scripts/paper.sh: logs the command to $RK_PAPER_LOG, then runs ropekit.'
    printf "real='%s'\n" "$(printf '%s' "$rk" | sed "s/'/'\\\\''/g")"
    cat <<'EOF'
if [ -n "${RK_PAPER_LOG:-}" ]; then
    line=${RK_PAPER_NAME:-ropekit}
    for a in "$@"; do
        case $a in
            *[!A-Za-z0-9_./:,=+@%-]*|'') line="$line '$(printf '%s' "$a" | sed "s/'/'\\\\''/g")'" ;;
            *) line="$line $a" ;;
        esac
    done
    printf '%s\n' "$line" >> "$RK_PAPER_LOG"
fi
exec "$real" "$@"
EOF
} > "$shim.tmp"
chmod +x "$shim.tmp"
mv "$shim.tmp" "$shim"

# Ctrl-C or kill: stop after the running tool has saved its finished rows (the steps that
# finished keep their stamps; make paper continues from there).
interrupted() {
    echo "paper: interrupted; finished steps are kept (rerun to continue)" >&2
    rm -f "$out/steps.tsv.tmp"
    exit "$1"
}
trap 'interrupted 130' INT
trap 'interrupted 143' TERM

steps="theory decay approx pattern scaling train"
nsteps=$(echo $steps | wc -w)
failed=""
t_start=$(now)
echo "paper: $mode settings into $(rel "$out") with $(rel "$rk")$( [ "$FORCE" = 1 ] && echo ', FORCE=1: every step reruns')"
printf 'step\tstatus\tseconds\targs\n' > "$out/steps.tsv.tmp"

i=0
for name in $steps; do
    i=$((i + 1))
    dir=$out/$name
    stamp=$dir/.stamp
    args=$(args_$name)
    resume=""
    tag=$(printf '[%d/%d] %-8s' "$i" "$nsteps" "$name")

    # Skip a finished step: same settings, outputs complete, stamp newer than the binary and
    # the step's scripts.
    fresh=0
    if [ "$FORCE" != 1 ] && [ -f "$stamp" ] && [ "$(sed -n 's/^args=//p' "$stamp")" = "$args" ] &&
       [ "$stamp" -nt "$rk" ]; then
        fresh=1
        for f in $(outputs_$name); do [ -s "$dir/$f" ] || { fresh=0; break; }; done
        for f in $(scripts_of "$name"); do [ "$stamp" -nt "$f" ] || { fresh=0; break; }; done
    fi
    if [ $fresh = 1 ]; then
        secs=$(sed -n 's/^seconds=//p' "$stamp")
        echo "paper: $tag up to date (finished $(sed -n 's/^finished=//p' "$stamp"), ${secs}s; FORCE=1 reruns)"
        printf '%s\tskipped\t%s\t%s\n' "$name" "${secs:--}" "${args:--}" >> "$out/steps.tsv.tmp"
        continue
    fi

    # approx, scaling and train: a finished table that is still valid (same settings, newer
    # than the binary) only needs its figures redrawn (PLOT_ONLY=1: a plot script changed or a
    # figure is missing); an interrupted table with the same settings is continued (--resume).
    plot_only=""
    table=$(table_of "$name")
    if [ "$FORCE" != 1 ] && [ -n "$table" ] &&
       [ -f "$dir/.args" ] && [ "$(cat "$dir/.args")" = "$args" ] && [ -s "$dir/$table" ]; then
        if [ ! -f "$stamp" ] && [ "$dir/$table" -nt "$rk" ]; then
            resume=--resume
        elif [ "$stamp" -nt "$rk" ] && [ -s "$dir/summary.txt" ] && table_done "$name"; then
            plot_only=1
        fi
    fi
    if [ -z "$plot_only$resume" ]; then
        rm -rf "$dir"
    fi
    prev_load=$(sed -n 's/^load=//p' "$stamp" 2>/dev/null || true)
    prev_busy=$(sed -n 's/^busy=//p' "$stamp" 2>/dev/null || true)
    rm -f "$stamp"
    mkdir -p "$dir"
    printf '%s\n' "$args" > "$dir/.args"
    command_of "$name" > "$dir/command.txt"
    echo >> "$dir/command.txt"
    [ -n "$plot_only$resume" ] || : > "$dir/commands.log"

    how=""
    [ -n "$resume" ] && how=" (continuing the interrupted table)"
    [ -n "$plot_only" ] && how=" (the table is up to date: redrawing the figures only)"
    echo "paper: $tag running: $(cat "$dir/command.txt")$how"
    load=$(cut -d" " -f1 /proc/loadavg 2>/dev/null || echo "?")
    busy=-
    [ "$name" = scaling ] && [ -z "$plot_only" ] && busy=$(cpu_busy)
    if [ "$busy" != - ] && awk -v b="$busy" 'BEGIN { exit !(b + 0 > 0.25) }'; then
        echo "paper: $tag warning: other processes keep $busy of $(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?') cores busy: the timings will be noisy" >&2
    fi
    t0=$(now)
    # a redraw keeps the load of the run that measured the table
    [ -n "$plot_only" ] && [ -n "$prev_load" ] && load=$prev_load
    [ -n "$plot_only" ] && [ -n "$prev_busy" ] && busy=$prev_busy
    RK_PAPER_LOG=$dir/commands.log RK_PAPER_NAME=$(rel "$rk") PLOT_ONLY=$plot_only
    export RK_PAPER_LOG RK_PAPER_NAME PLOT_ONLY
    if run_$name > "$dir/run.log"; then
        t1=$(now)
        secs=$((t1 - t0))
        printf 'args=%s\nseconds=%s\nfinished=%s\nropekit=%s\nload=%s\nbusy=%s\n' "$args" "$secs" \
            "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(rel "$rk")" "$load" "$busy" > "$stamp.tmp"
        mv "$stamp.tmp" "$stamp"
        extra=""
        [ "$name" = theory ] && extra=": $(sed -n 's/^[0-9]* checks: //p' "$dir/theory.txt")"
        echo "paper: $tag done in ${secs}s$extra"
        status=ran; [ -n "$plot_only" ] && status=redrawn
        printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$secs" "${args:--}" >> "$out/steps.tsv.tmp"
    else
        st=$?
        t1=$(now)
        case $st in 130|143) echo "paper: $tag interrupted after $((t1 - t0))s" >&2; interrupted "$st" ;; esac
        echo "paper: $tag FAILED (exit $st after $((t1 - t0))s); the end of $(rel "$dir")/run.log:" >&2
        tail -n 15 "$dir/run.log" >&2 || true
        printf '%s\tfailed\t%s\t%s\n' "$name" "$((t1 - t0))" "${args:--}" >> "$out/steps.tsv.tmp"
        failed="$failed $name"
    fi
done
mv "$out/steps.tsv.tmp" "$out/steps.tsv"

echo "paper: writing the report"
PAPER_MODE=$mode PAPER_SECONDS=$(( $(now) - t_start )) ROPEKIT=$rk \
    sh "$root/scripts/paper_report.sh" "$out"
echo "paper: $(rel "$out")/REPORT.md and $(rel "$out")/index.html in $(( $(now) - t_start ))s"
if [ -n "$failed" ]; then
    echo "paper: step(s) did not finish:$failed (their claims are NOT RUN in the report)" >&2
    exit 1
fi
