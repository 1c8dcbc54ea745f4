# The long-term decay bound B(dist) = mean_{j=1..d/2} |S_j(dist)| against the relative distance
# from a `ropekit decay` TSV (every curve of the table: bases x scalings), and the file META that
# plots/decay.sh derives from the tables (titles, d, ranges). Left: the whole curve(s), with
# B(0) = (d/2 + 1)/2 (the same for every base and scaling) and, for one curve, its minimum
# marked. Right: for RoFormer's settings (d = 128, base 10000, no scaling) the paper's Figure 2
# view, whose y range (about 6 to 20.5, Mathematica's automatic PlotRange) clips the peak below
# distance ~8 (docs/theory.md, "Figure 2"); for any other setting the tail, with the y axis
# zoomed to the values beyond the peak at 0. Writes OUT.png and OUT.svg.
#   gnuplot -e "in='fig2.tsv'; meta='decay.gp.in'; out='fig2'; here='plots'; caption='...'" plots/decay.gp
if (!exists("in") || !exists("out") || !exists("meta")) {
    print "decay.gp: set in='FILE.tsv', meta='decay.gp.in' and out='BASENAME'"; exit status 1
}
if (!exists("caption")) caption = in
if (!exists("here")) here = "plots"
load meta    # f2_n, f2_d, f2_xmin, f2_xmax, f2_col_<i>, f2_title_<i>, f2_min_<i>, f2_at_<i>, ...

cw = 1200
ch = 600 + f2_n * 15
load here."/common.gp"
keyrows = f2_n
set datafile separator tab
set datafile columnheaders
b0 = (f2_d / 2 + 1) / 2.0
ctitle(i) = value(sprintf("f2_title_%d", i))
has0 = (f2_xmin <= 0 && 0 <= f2_xmax)
span = f2_xmax - f2_xmin
ptitle = f2_paper ? "Long-term decay of RoPE (RoFormer Figure 2)" \
                  : sprintf("Long-term decay bound B of RoPE (d = %d)", f2_d)

do for [fmt in "png svg"] {
    if (fmt eq "png") {
        set terminal pngcairo size cw,ch enhanced font "Sans,11" linewidth 1.3
    } else {
        set terminal svg size cw,ch enhanced font "Sans,11" linewidth 1.3 background "white"
    }
    set output out.".".fmt
    set multiplot title ptitle font ",14"
    set label 99 caption at screen 0.01, px_y(12) left font ",9" textcolor rgb "#444444" noenhanced
    set grid lc rgb "#dddddd"
    set xlabel "relative distance"
    set ylabel "relative upper bound B = (1/(d/2)) {/Symbol S}_j |S_j|"
    set xrange [f2_xmin:f2_xmax]
    set xtics autofreq
    # left: the full curve(s)
    eval panel(1, 1, 1, 2, keyrows)
    set key font ",9" box opaque samplen 3
    set title "full curve" font ",12"
    set yrange [0:(f2_bhi > b0 ? f2_bhi : b0) * 1.08]
    set ytics autofreq
    if (has0) {
        set label 1 sprintf("B(0) = (d/2+1)/2 = %g", b0) at first 0, first b0 left offset 1,0.6 font ",10"
    }
    if (f2_n == 1) {
        set label 2 sprintf("lowest: %.4g at %g", f2_min_1, f2_at_1) at first f2_at_1, first f2_min_1 right offset -1,-1 font ",10"
        set object 1 circle at first f2_at_1, first f2_min_1 size screen 0.004 fc rgb "#cc0000" fs solid front
    }
    plot for [i=1:f2_n] in using 1:(column(f2_n > 1 ? i + 2 : 2)) with lines lw 1.5 lc rgb (f2_n == 1 ? "#1f5fbf" : series_color(i)) \
         dt series_dt(i) title ctitle(i)
    unset label 1
    unset label 2
    unset object 1
    unset label 99
    # right: the paper's view, or the tail
    eval panel(1, 2, 1, 2, keyrows)
    set key font ",9" box opaque samplen 3
    if (f2_paper) {
        set title "as printed in the paper (y clipped to 6 - 20.5)" font ",12"
        set yrange [6:20.5]
        set ytics 2
    } else {
        set title sprintf("the tail: y zoomed to the values at |distance| >= %g", f2_tail_cut) font ",12"
        set yrange [f2_blo - 0.05 * (f2_tail_hi - f2_blo):f2_tail_hi + 0.05 * (f2_tail_hi - f2_blo) + 1e-9]
        set ytics autofreq
    }
    set mxtics 5
    plot for [i=1:f2_n] in using 1:(column(f2_n > 1 ? i + 2 : 2)) with lines lw 1.5 lc rgb (f2_n == 1 ? "#1f5fbf" : series_color(i)) \
         dt series_dt(i) title ctitle(i)
    unset mxtics
    unset multiplot
    set output
}
