# Sourced by every plots/<name>.sh: the contract of a figure set.
#   - A script runs its ropekit command(s) (tables written atomically by ropekit), then draws its
#     figures with gnuplot into a staging directory OUTDIR/.stage.<pid>.
#   - Only when every gnuplot run succeeded and every expected file exists and is non-empty are
#     the files moved into OUTDIR (plot_commit).
#   - On any failure (ropekit, awk, gnuplot, a missing figure, a signal) the script exits nonzero,
#     the staging directory is removed and so are this script's figures in OUTDIR: a failed run
#     never leaves a partial set, nor an older set beside a newer table.
# Usage in a script (after `set -eu`, with $out set):
#   . "$here/common.sh"
#   plot_begin NAME "fig1 fig2 ..."        figure basenames; each gives NAME.png and NAME.svg
#   gnuplot -e "out='$stage/fig1'; ..." "$here/x.gp"   (or plot_gnuplot, which names the script)
#   plot_commit [other staged files...]     move the figures (and those files) into OUTDIR

plot_die() { echo "plots/$plot_name.sh: $*" >&2; exit 1; }

# Called on exit: on failure, no staged file and none of this script's figures stay behind.
plot_cleanup() {
    plot_st=$?
    [ -n "${stage:-}" ] && rm -rf "$stage"
    if [ "$plot_st" -ne 0 ] && [ -z "${plot_done:-}" ]; then
        for plot_f in $plot_figs; do rm -f "$out/$plot_f.png" "$out/$plot_f.svg"; done
        echo "plots/$plot_name.sh: failed (exit $plot_st): no figures left in $out" >&2
    fi
    exit "$plot_st"
}

plot_begin() {
    plot_name=$1
    plot_figs=$2
    plot_done=
    command -v gnuplot >/dev/null 2>&1 || {
        echo "plots/$plot_name.sh: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }
    mkdir -p "$out"
    stage=$out/.stage.$$
    rm -rf "$stage"
    mkdir "$stage"
    trap plot_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
}

# gnuplot with its script named in the error line: any gnuplot error fails the set.
plot_gnuplot() { # SCRIPT EXPRESSIONS
    gnuplot -e "$2" "$1" || plot_die "gnuplot failed on $(basename "$1") (see its message above)"
}

# Every expected figure, PNG and SVG, must be there and non-empty; then all move into OUTDIR.
plot_commit() { # [extra staged files to move as well]
    for plot_f in $plot_figs; do
        for plot_x in png svg; do
            [ -s "$stage/$plot_f.$plot_x" ] || plot_die "gnuplot wrote no $plot_f.$plot_x"
        done
    done
    for plot_f in $plot_figs; do
        mv -f "$stage/$plot_f.png" "$out/$plot_f.png"
        mv -f "$stage/$plot_f.svg" "$out/$plot_f.svg"
    done
    for plot_f in "$@"; do mv -f "$stage/$plot_f" "$out/$plot_f"; done
    plot_done=1
}

# A gnuplot string literal of arbitrary text: single quotes, with ' doubled.
gp_str() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }
