# Sourced by every plots/<name>.sh: the contract of a figure set.
#   - A script runs its ropekit command(s) (tables written atomically by ropekit), then draws its
#     figures with gnuplot into a staging directory OUTDIR/.stage.<pid>.
#   - Only when every gnuplot run succeeded and every expected file exists and is non-empty are
#     the files moved into OUTDIR (plot_commit).
#   - On any failure (ropekit, awk, gnuplot, a missing figure, a signal) the script exits nonzero,
#     the staging directory is removed and so are this script's figures in OUTDIR: a failed run
#     never leaves a partial set, nor an older set beside a newer table.
#   - A figure path in OUTDIR that is a symbolic link keeps its link: the figure replaces the
#     link's target (atomically, in the target's directory); one that is a FIFO or a device is
#     written to as it is. Neither is removed by a failed run (only regular files are).
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
        for plot_f in $plot_figs; do
            for plot_x in png svg; do
                plot_p=$out/$plot_f.$plot_x
                if [ -f "$plot_p" ] && [ ! -L "$plot_p" ]; then rm -f "$plot_p"; fi
            done
        done
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
        plot_place "$stage/$plot_f.png" "$out/$plot_f.png"
        plot_place "$stage/$plot_f.svg" "$out/$plot_f.svg"
    done
    for plot_f in "$@"; do plot_place "$stage/$plot_f" "$out/$plot_f"; done
    plot_done=1
}

# Put a staged file at DEST: a regular file or nothing there is replaced by a rename; a symlink
# (dangling too) keeps its link and its target is replaced by a rename beside the target; a FIFO
# or device is written to.
plot_place() { # STAGED DEST
    plot_dst=$2
    if [ -L "$plot_dst" ]; then
        plot_dst=$(readlink -f -- "$2") || plot_die "cannot resolve the link $2"
    fi
    if [ -e "$plot_dst" ] && [ ! -f "$plot_dst" ] && [ ! -d "$plot_dst" ]; then
        cat -- "$1" > "$plot_dst" || plot_die "cannot write $2"
        rm -f -- "$1"
    elif [ "$plot_dst" = "$2" ]; then
        mv -f -- "$1" "$plot_dst"
    else
        plot_tmp=$(dirname -- "$plot_dst")/.$(basename -- "$plot_dst").tmp.$$
        cp -- "$1" "$plot_tmp" && mv -f -- "$plot_tmp" "$plot_dst" ||
            { rm -f -- "$plot_tmp"; plot_die "cannot write $2 (through its link)"; }
        rm -f -- "$1"
    fi
}

# A gnuplot string literal of arbitrary text: single quotes, with ' doubled.
gp_str() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }
