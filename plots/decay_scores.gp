# What the scores actually do beside the bound of eq. (37), from two `ropekit decay` TSVs with
# draws: left q, k independent N(0, 1) (the score's distribution does not depend on the distance
# at all), right q = k (the mean score does decay). Per distance: the 5-95% band and the median
# of the draws, against the median over the draws of the two sides of (37): the middle term
# sum_i |S_{i+1}||h_{i+1} - h_i| and the bound max_i |h_{i+1} - h_i| * sum_j |S_j| (per draw).
# Reads only the TSVs. Writes OUT.png and OUT.svg.
#   gnuplot -e "iid='a.tsv'; same='b.tsv'; out='scores'; caption='...'" plots/decay_scores.gp
if (!exists("iid") || !exists("same") || !exists("out")) { print "decay_scores.gp: set iid=, same=, out="; exit status 1 }
if (!exists("caption")) caption = iid

set datafile separator tab
set datafile columnheaders
stats iid using 'distance' nooutput
xmin = STATS_min
xmax = STATS_max

do for [fmt in "png svg"] {
    if (fmt eq "png") {
        set terminal pngcairo size 1300,600 enhanced font "Sans,11" linewidth 1.3
    } else {
        set terminal svg size 1300,600 enhanced font "Sans,11" linewidth 1.3 background "white"
    }
    set output out.".".fmt
    set multiplot layout 1,2 title "RoPE scores of random q, k against the long-term decay bound (37)" \
        font ",14" margins 0.07, 0.98, 0.17, 0.88 spacing 0.08
    set label 99 caption at screen 0.01, 0.03 left font ",9" textcolor rgb "#444444"
    set grid lc rgb "#dddddd"
    set logscale y
    set format y "10^{%T}"
    set xrange [xmin:xmax]
    set xlabel "relative distance m - n"
    set key top right box opaque font ",9" spacing 1.1
    set style fill transparent solid 0.25 noborder

    set title "q, k independent, entries N(0,1)" font ",12"
    set ylabel "|score| = |(R_m q) . (R_n k)|"
    set yrange [0.1:3e5]
    plot iid using 'distance':'abs_q05':'abs_q95' with filledcurves lc rgb "#1f5fbf" \
             title "|score|, 5-95% of draws", \
         iid using 'distance':'abs_median' with lines lw 1.5 lc rgb "#1f5fbf" title "|score|, median", \
         iid using 'distance':'abel_median' with lines lw 1.5 dt 2 lc rgb "#d95f02" \
             title "middle of (37): {/Symbol S}_i |S_{i+1}||h_{i+1}-h_i|, median", \
         iid using 'distance':'perdraw_bound_median' with lines lw 1.5 lc rgb "#b2182b" \
             title "bound (37): max_i|h_{i+1}-h_i| {/Symbol S}_j |S_j|, median"

    set title "q = k, entries N(0,1)" font ",12"
    set ylabel "score = (R_m q) . (R_n q)"
    set yrange [1:3e5]
    plot same using 'distance':'score_q05':'score_q95' with filledcurves lc rgb "#1b9e77" \
             title "score, 5-95% of draws", \
         same using 'distance':'score_mean' with lines lw 1.5 lc rgb "#1b9e77" title "score, mean", \
         same using 'distance':'abel_median' with lines lw 1.5 dt 2 lc rgb "#d95f02" \
             title "middle of (37), median", \
         same using 'distance':'perdraw_bound_median' with lines lw 1.5 lc rgb "#b2182b" \
             title "bound (37), median"
    unset multiplot
    unset label 99
    set output
}
