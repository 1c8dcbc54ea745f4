# The long-term decay bound B(dist) for several bases and scalings, from two `ropekit decay`
# TSVs (BASES: one curve per base; SCAL: one base under each scaling, "none" first; only the
# rows up to distance 256 are needed), the window summaries plots/decay.sh derives from the
# whole tables (BLONG, SLONG) and META (titles, d). Three panels:
#   Figure 2's range   every curve at distances 0..256 (bases solid, scalings dashed)
#   long range, bases / long range, scalings   log distance from 1; B oscillates faster than
#       a pixel there, so each curve is drawn as its mean over windows of 1/12 decade (line)
#       with the range of B inside each window (band)
# Writes OUT.png and OUT.svg.
#   gnuplot -e "bases='a.tsv'; scal='b.tsv'; blong='a_long.tsv'; slong='b_long.tsv';
#               meta='decay.gp.in'; out='bases'; here='plots'; caption='...'" plots/decay_bases.gp
if (!exists("bases") || !exists("scal") || !exists("blong") || !exists("slong") || !exists("out") || !exists("meta")) {
    print "decay_bases.gp: set bases=, scal=, blong=, slong=, meta=, out="; exit status 1
}
if (!exists("caption")) caption = bases
if (!exists("here")) here = "plots"
load meta    # ba_n ba_d ba_col_<i> ba_title_<i> ..., sc_n sc_scaled_<j> ...

cw = 1650
keyrows = ba_n + sc_n
ch = 640 + keyrows * 15
load here."/common.gp"
set datafile separator tab
btitle(i) = value(sprintf("ba_title_%d", i))
stitle(j) = value(sprintf("sc_title_%d", j))
scaled(j) = value(sprintf("sc_scaled_%d", j))
bcolor(i) = series_color(i)
scolor(j) = scaled(j) ? series_color(ba_n + j) : "#000000"   # the unscaled base: black
ymax = (ba_d / 2 + 1) / 2.0 * 1.05
xlong = ba_xmax > sc_xmax ? ba_xmax : sc_xmax
set style fill transparent solid 0.15 noborder

do for [fmt in "png svg"] {
    if (fmt eq "png") {
        set terminal pngcairo size cw,ch enhanced font "Sans,11" linewidth 1.3
    } else {
        set terminal svg size cw,ch enhanced font "Sans,11" linewidth 1.3 background "white"
    }
    set output out.".".fmt
    set multiplot title sprintf("Long-term decay bound B for several bases and scalings (d = %d)", ba_d) font ",14"
    set label 99 caption at screen 0.01, px_y(12) left font ",9" textcolor rgb "#444444" noenhanced
    set grid lc rgb "#dddddd"
    set yrange [0:ymax]
    set ylabel "relative upper bound B = mean_j |S_j|"

    # Figure 2's range: every curve
    set datafile columnheaders
    eval panel(1, 1, 1, 3, keyrows)
    set key font ",9" box opaque samplen 3
    set title "Figure 2's range" font ",12"
    set xrange [0:256]
    set xtics 50
    set xlabel "relative distance"
    # (columns by number: bound, then bound_<curve> per curve when there are several; the
    # scalings table starts with the unscaled base, already among the bases, so it is skipped)
    plot for [i=1:ba_n] bases using 1:(column(ba_n > 1 ? i + 2 : 2)) with lines lw 1.3 lc rgb bcolor(i) dt 1 title btitle(i), \
         for [j=2:sc_n] scal using 1:(column(j + 2)) with lines lw 1.3 lc rgb scolor(j) \
             dt series_dt(j) title stitle(j)
    unset label 99

    # the long range, as window means (lines) and ranges (bands)
    set datafile nocolumnheaders
    set logscale x
    set xrange [1:xlong]
    set xtics autofreq
    set format x "%g"
    set xlabel "relative distance (log scale)"
    eval panel(1, 2, 1, 3, ba_n)
    set key font ",9" box opaque samplen 3
    set title "long range, bases: mean over 1/12-decade windows, band = min..max" font ",11"
    plot for [i=1:ba_n] blong index (i - 1) using 1:3:4 with filledcurves lc rgb bcolor(i) notitle, \
         for [i=1:ba_n] blong index (i - 1) using 1:2 with lines lw 1.6 lc rgb bcolor(i) dt 1 title btitle(i)
    eval panel(1, 3, 1, 3, sc_n)
    set key font ",9" box opaque samplen 3
    set title "long range, scalings: the same summary" font ",11"
    plot for [j=1:sc_n] slong index (j - 1) using 1:3:4 with filledcurves lc rgb scolor(j) notitle, \
         for [j=1:sc_n] slong index (j - 1) using 1:2 with lines lw 1.6 lc rgb scolor(j) dt series_dt(j) title stitle(j)
    unset logscale x
    unset multiplot
    set output
}
