# Figures of `ropekit scaling` from its TSV (and the fit file plots/scaling.sh derives from the
# TSV's '# summary' lines). Writes OUT/time, memory, throughput, crossover (.png and .svg):
#   time        median time per execute vs length, log-log, 95% CI bars, the fitted lines
#               log t = a + b log n with b and its interval in the legend; one panel per mask
#   memory      the plan's working bytes and the process's peak RSS per point vs length
#   throughput  tokens per second vs length
#   crossover   time of each linear variant over its exact reference's; below 1 it is faster,
#               the interpolated crossover marked
#   gnuplot -e "in='scaling.tsv'; fits='fits.gp'; lines='fitlines.tsv'; ratio='ratio.tsv';
#               out='DIR'; caption='...'" plots/scaling.gp
if (!exists("in") || !exists("out") || !exists("fits")) {
    print "scaling.gp: set in='FILE.tsv', fits='fits.gp', lines=, ratio= and out='DIR'"; exit status 1
}
if (!exists("caption")) caption = in
load fits          # variants, masks, nvar, titles t_<mask>_<i>, crossovers x_<mask>_<i>

set datafile separator tab
set datafile columnheaders
set datafile missing "nan"
sel(v, mk) = (strcol('variant') eq v && strcol('mask') eq mk && strcol('status') eq 'ok')

# one colour and point type per variant (index i)
color(i) = word("#1f77b4 #d62728 #2ca02c #ff7f0e #9467bd #8c564b #e377c2 #17becf #7f7f7f #bcbd22 #000000", (i - 1) % 11 + 1)
set style line 99 lc rgb "#dddddd"
set grid ls 99
set logscale xy
set format x "%.0s%c"
set format y "10^{%L}"
set mxtics 10

do for [fmt in "png svg"] {
    if (fmt eq "png") {
        set terminal pngcairo size 1400,620 enhanced font "Sans,10" linewidth 1.3
    } else {
        set terminal svg size 1400,620 enhanced font "Sans,10" linewidth 1.3 background "white"
    }

    # ---- time vs length ----------------------------------------------------------------------
    set output out."/time.".fmt
    set multiplot layout 1,2 title "Time per execute against sequence length (log-log)" font ",14" \
        margins 0.07, 0.99, 0.13, 0.90 spacing 0.09
    set label 99 caption at screen 0.01, 0.02 left font ",8" textcolor rgb "#444444" noenhanced
    set xlabel "sequence length n"
    set ylabel "median time per execute [s]"
    set key top left Left reverse font ",8" spacing 0.9 box opaque
    do for [mk in masks] {
        set title mk font ",12"
        plot for [i=1:nvar] in using 'n':(sel(word(variants, i), mk) ? column('median_s') : NaN):'ci_lo_s':'ci_hi_s' \
                 with yerrorbars lc rgb color(i) pt 7 ps 0.5 notitle, \
             for [i=1:nvar] lines using (strcol(1) eq word(variants, i) && strcol(2) eq mk ? $3 : NaN):4 \
                 with lines lc rgb color(i) dt 1 title value(sprintf("t_%s_%d", mk, i))
        unset label 99
    }
    unset multiplot

    # ---- memory vs length --------------------------------------------------------------------
    set output out."/memory.".fmt
    set multiplot layout 1,2 title "Memory against sequence length (bidirectional)" font ",14" \
        margins 0.07, 0.99, 0.13, 0.90 spacing 0.09
    set label 99 caption at screen 0.01, 0.02 left font ",8" textcolor rgb "#444444" noenhanced
    set key top left Left reverse font ",8" box opaque
    set title "plan working memory (rk\\_attn\\_bytes)" font ",12"
    set ylabel "bytes"
    plot for [i=1:nvar] in using 'n':(sel(word(variants, i), "bidirectional") ? column('plan_bytes') : NaN) \
        with linespoints lc rgb color(i) pt 7 ps 0.5 title word(variants, i)
    unset label 99
    set title "peak resident set size during the point (VmHWM)" font ",12"
    set ylabel "KiB"
    plot for [i=1:nvar] in using 'n':(sel(word(variants, i), "bidirectional") && column('rss_peak_kb') > 0 ? column('rss_peak_kb') : NaN) \
        with linespoints lc rgb color(i) pt 7 ps 0.5 title word(variants, i)
    unset multiplot

    # ---- throughput --------------------------------------------------------------------------
    set output out."/throughput.".fmt
    set multiplot layout 1,2 title "Throughput against sequence length" font ",14" \
        margins 0.07, 0.99, 0.13, 0.90 spacing 0.09
    set label 99 caption at screen 0.01, 0.02 left font ",8" textcolor rgb "#444444" noenhanced
    set ylabel "tokens per second"
    set key bottom left Left reverse font ",8" box opaque
    do for [mk in masks] {
        set title mk font ",12"
        plot for [i=1:nvar] in using 'n':(sel(word(variants, i), mk) ? column('tokens_per_s') : NaN) \
            with linespoints lc rgb color(i) pt 7 ps 0.5 title word(variants, i)
        unset label 99
    }
    unset multiplot

    # ---- crossover ---------------------------------------------------------------------------
    set output out."/crossover.".fmt
    set multiplot layout 1,2 title "Linear variants against exact attention: time ratio" font ",14" \
        margins 0.07, 0.99, 0.13, 0.90 spacing 0.09
    set label 99 caption at screen 0.01, 0.02 left font ",8" textcolor rgb "#444444" noenhanced
    set ylabel "time(variant) / time(exact reference)"
    set format y "%g"
    set key bottom left Left reverse font ",8" box opaque
    do for [mk in masks] {
        set title mk." (below 1: faster than exact; crossover marked)" font ",12"
        plot 1 with lines lc rgb "#000000" dt 2 notitle, \
             for [i=1:nvar] ratio using (strcol(1) eq word(variants, i) && strcol(2) eq mk ? $3 : NaN):4:5:6 \
                 with yerrorlines lc rgb color(i) pt 7 ps 0.5 title value(sprintf("c_%s_%d", mk, i)), \
             for [i=1:nvar] '+' using (value(sprintf("x_%s_%d", mk, i))):(1.0) every ::0::0 \
                 with points lc rgb color(i) pt 6 ps 2 notitle
        unset label 99
    }
    unset multiplot
}
