# RoFormer Figure 2 ("Long-term decay of RoPE") from a `ropekit decay` TSV: the relative upper
# bound B(dist) = mean_{j=1..d/2} |S_j(dist)| against the relative distance. Left: the whole curve,
# with B(0) = (d/2 + 1)/2 and the minimum marked; right: the paper's view, whose y range (about
# 6 to 20.5, Mathematica's automatic PlotRange) clips the peak below distance ~8 (PAPER.md s. 2).
# Reads only the TSV. Writes OUT.png and OUT.svg.
#   gnuplot -e "in='fig2.tsv'; out='fig2'; caption='...'" plots/decay.gp
if (!exists("in") || !exists("out")) { print "decay.gp: set in='FILE.tsv' and out='BASENAME'"; exit status 1 }
if (!exists("caption")) caption = in

set datafile separator tab
set datafile columnheaders
stats in using 'distance':'bound' nooutput
b0 = STATS_max_y
bmin = STATS_min_y
xmin = STATS_pos_min_y
xmax = STATS_max_x

do for [fmt in "png svg"] {
    if (fmt eq "png") {
        set terminal pngcairo size 1200,560 enhanced font "Sans,11" linewidth 1.3
    } else {
        set terminal svg size 1200,560 enhanced font "Sans,11" linewidth 1.3 background "white"
    }
    set output out.".".fmt
    set multiplot layout 1,2 title "Long-term decay of RoPE (RoFormer Figure 2)" font ",14" \
        margins 0.07, 0.98, 0.17, 0.88 spacing 0.08
    set label 99 caption at screen 0.01, 0.03 left font ",9" textcolor rgb "#444444"
    set grid lc rgb "#dddddd"
    set key top right box opaque
    set xlabel "relative distance"
    set ylabel "relative upper bound"
    set xrange [0:xmax]
    set xtics 50
    # left: the full curve
    set title "full curve" font ",12"
    set yrange [0:b0 * 1.08]
    set ytics 5
    set label 1 sprintf("B(0) = (d/2+1)/2 = %g", b0) at graph 0.04, first b0 left offset 1,0 font ",10"
    set label 2 sprintf("lowest: %.4g at %g", bmin, xmin) at first xmin, first bmin right offset -1,-1 font ",10"
    set object 1 circle at first xmin, first bmin size screen 0.004 fc rgb "#cc0000" fs solid front
    plot in using 'distance':'bound' with lines lw 1.5 lc rgb "#1f5fbf" \
         title "B = (1/(d/2)) {/Symbol S}_j |S_j|"
    unset label 1
    unset label 2
    unset object 1
    # right: the paper's view
    set title "as printed in the paper (y clipped to 6 - 20.5)" font ",12"
    set yrange [6:20.5]
    set ytics 2
    set mxtics 5
    plot in using 'distance':'bound' with lines lw 1.5 lc rgb "#1f5fbf" \
         title "B = (1/(d/2)) {/Symbol S}_j |S_j|"
    unset mxtics
    unset multiplot
    unset label 99
    set output
}
