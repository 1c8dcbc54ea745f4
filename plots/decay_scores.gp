# What the scores actually do beside the bound of eq. (37), from two `ropekit decay` TSVs with
# draws: left q, k independent (entries N(0, 1) by default, or the --dist of the run: the
# score's distribution does not depend on the distance at all), right q = k (the mean score
# does decay). Per distance: the 5-95% band and the median (left, of |score|) or mean (right)
# of the draws, against the median over the draws of the two sides of (37): the middle term
# sum_i |S_{i+1}||h_{i+1} - h_i| and the bound max_i |h_{i+1} - h_i| * sum_j |S_j| (per draw).
# Log y axes: where q = k gives scores <= 0 (small d, long distances) the panel says how often.
# Reads only the TSVs and META (ranges, counts). Writes OUT.png and OUT.svg.
#   gnuplot -e "iid='a.tsv'; same='b.tsv'; dist='normal'; meta='decay.gp.in'; out='scores';
#               here='plots'; caption='...'" plots/decay_scores.gp
if (!exists("iid") || !exists("same") || !exists("out") || !exists("meta")) {
    print "decay_scores.gp: set iid=, same=, meta=, out="; exit status 1
}
if (!exists("caption")) caption = iid
if (!exists("here")) here = "plots"
if (!exists("dist")) dist = "normal"
load meta    # si_lo si_hi (left), ss_lo ss_hi ss_rows ss_neg_q05 ss_neg_mean (right), f2_d

cw = 1300
ch = 680
load here."/common.gp"
set datafile separator tab
set datafile columnheaders
stats iid using 'distance' nooutput
xmin = STATS_min
xmax = STATS_max
dname = dist eq "normal" ? "entries N(0,1)" : dist eq "uniform" ? "entries uniform (-sqrt3, sqrt3)" \
      : dist eq "rademacher" ? "entries +-1" : dist eq "same" ? "q = k, entries N(0,1)" : "entries ".dist
pos(x) = x > 0 ? x : NaN
set style textbox opaque margins 2, 2 border lc rgb "#b2182b"

do for [fmt in "png svg"] {
    if (fmt eq "png") {
        set terminal pngcairo size cw,ch enhanced font "Sans,11" linewidth 1.3
    } else {
        set terminal svg size cw,ch enhanced font "Sans,11" linewidth 1.3 background "white"
    }
    set output out.".".fmt
    set multiplot title "RoPE scores of random q, k against the long-term decay bound (37)" font ",14"
    set label 99 caption at screen 0.01, px_y(12) left font ",9" textcolor rgb "#444444" noenhanced
    set grid lc rgb "#dddddd"
    set logscale y
    set format y "10^{%T}"
    set xrange [xmin:xmax]
    set xlabel "relative distance m - n"
    set style fill transparent solid 0.25 noborder

    eval panel(1, 1, 1, 2, 4)
    set key font ",9" spacing 1.1 box opaque samplen 3
    set title (dist eq "same" ? dname : "q, k independent, ".dname) font ",12"
    set ylabel "|score| = |(R_m q) . (R_n k)|"
    set yrange [si_lo:si_hi]
    plot iid using 'distance':(pos(column('abs_q05'))):'abs_q95' with filledcurves lc rgb "#1f5fbf" \
             title "|score|, 5-95% of draws", \
         iid using 'distance':'abs_median' with lines lw 1.5 lc rgb "#1f5fbf" title "|score|, median", \
         iid using 'distance':'abel_median' with lines lw 1.5 dt 2 lc rgb "#d95f02" \
             title "middle of (37): {/Symbol S}_i |S_{i+1}||h_{i+1}-h_i|, median", \
         iid using 'distance':'perdraw_bound_median' with lines lw 1.5 dt 4 lc rgb "#b2182b" \
             title "bound (37): max_i|h_{i+1}-h_i| {/Symbol S}_j |S_j|, median"
    unset label 99

    eval panel(1, 2, 1, 2, 4)
    set key font ",9" spacing 1.1 box opaque samplen 3
    set title "q = k, entries N(0,1)" font ",12"
    set ylabel "score = (R_m q) . (R_n q)"
    set yrange [ss_lo:ss_hi]
    if (ss_neg_q05 + ss_neg_mean > 0) {
        set label 97 sprintf("the log axis cannot show scores <= 0, found here for the\nmean at %d, 5%% quantile at %d of %d distances", \
            ss_neg_mean, ss_neg_q05, ss_rows) at graph 0.03, graph 0.1 left front boxed font ",8" textcolor rgb "#b2182b"
    }
    plot same using 'distance':(pos(column('score_q05'))):'score_q95' with filledcurves lc rgb "#1b9e77" \
             title "score, 5-95% of draws", \
         same using 'distance':(pos(column('score_mean'))) with lines lw 1.5 lc rgb "#1b9e77" title "score, mean", \
         same using 'distance':'abel_median' with lines lw 1.5 dt 2 lc rgb "#d95f02" \
             title "middle of (37), median", \
         same using 'distance':'perdraw_bound_median' with lines lw 1.5 dt 4 lc rgb "#b2182b" \
             title "bound (37), median"
    unset label 97
    unset multiplot
    set output
}
