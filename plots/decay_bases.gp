# The long-term decay bound B(dist) for several bases and scalings on one chart, from two
# `ropekit decay` TSVs: bases 100, 1000, 10000, 500000 (solid), and base 10000 under the linear,
# NTK-aware and YaRN scalings (dashed). Log distance axis from 1. Reads only the TSVs.
# Writes OUT.png and OUT.svg.
#   gnuplot -e "bases='a.tsv'; scal='b.tsv'; out='bases'; caption='...'" plots/decay_bases.gp
if (!exists("bases") || !exists("scal") || !exists("out")) { print "decay_bases.gp: set bases=, scal=, out="; exit status 1 }
if (!exists("caption")) caption = bases

set datafile separator tab
set datafile columnheaders
stats bases using 'distance' nooutput
xmax = STATS_max

# Curves: column, title, colour, dash type.
ncurve = 7
col(i)   = word("bound_b100 bound_b1000 bound_b10000 bound_b500000 bound_b10000_linear4 bound_b10000_ntk4 bound_b10000_yarn4_4096", i)
file(i)  = i <= 4 ? bases : scal

titles   = "base 100|base 1000|base 10000 (RoFormer)|base 500000 (Llama 3)|base 10000, linear x4|base 10000, NTK x4|base 10000, YaRN x4 (L = 4096)"
title(i) = _t(titles, i)
_t(t, i) = i == 1 ? (strstrt(t, "|") ? t[1:strstrt(t, "|") - 1] : t) : _t(t[strstrt(t, "|") + 1:], i - 1)
color(i) = word("#e41a1c #ff7f00 #1f5fbf #4daf4a #984ea3 #a65628 #f781bf", i)
dash(i)  = i <= 4 ? 1 : i - 3

do for [fmt in "png svg"] {
    if (fmt eq "png") {
        set terminal pngcairo size 1300,620 enhanced font "Sans,11" linewidth 1.3
    } else {
        set terminal svg size 1300,620 enhanced font "Sans,11" linewidth 1.3 background "white"
    }
    set output out.".".fmt
    set multiplot layout 1,2 title "Long-term decay bound B for several bases and scalings (d = 128)" \
        font ",14" margins 0.06, 0.98, 0.17, 0.88 spacing 0.07
    set label 99 caption at screen 0.01, 0.03 left font ",9" textcolor rgb "#444444"
    set grid lc rgb "#dddddd"
    set yrange [0:34]
    set ylabel "relative upper bound B = mean_j |S_j|"

    set title "Figure 2's range" font ",12"
    set xrange [0:256]
    set xtics 50
    set xlabel "relative distance"
    set key top right box opaque font ",9"
    plot for [i=1:ncurve] file(i) using 'distance':col(i) with lines lw 1.4 dt dash(i) \
         lc rgb color(i) title title(i)

    set title "long range (log scale): the bound keeps oscillating" font ",12"
    set logscale x
    set xrange [1:xmax]
    set xtics auto
    set xlabel "relative distance (log scale)"
    unset key
    plot for [i=1:ncurve] file(i) using 'distance':col(i) with lines lw 0.8 dt dash(i) \
         lc rgb color(i) notitle
    unset logscale x
    unset multiplot
    unset label 99
    set output
}
