# Figures of `ropekit scaling` from its TSV (and the file fits.gp that plots/scaling.sh derives
# from the TSV: variant and mask lists, legend titles, crossovers, and the axis ranges of the
# data). Writes OUT/time, memory, throughput, crossover (.png and .svg):
#   time        median time per execute vs length, log-log, 95% CI bars, the fitted lines
#               log t = a + b log n with b and its interval in the legend; one panel per mask
#   memory      the plan's working bytes and the process's peak RSS per point vs length (the
#               first mask of the table)
#   throughput  tokens per second vs length, one panel per mask
#   crossover   time of each linear variant over its exact reference's; below 1 it is faster,
#               the interpolated crossover marked; one panel per mask
# Every variant has its own colour, dash type and marker (curves that coincide, such as
# softmax and softmax-rope, stay distinguishable); legends sit below the panels, off the data.
# Works for any subset of variants and masks: a panel without data says so.
#   gnuplot -e "in='scaling.tsv'; fits='fits.gp'; lines='fitlines.tsv'; ratio='ratio.tsv';
#               out='DIR'; here='plots'; caption='...'" plots/scaling.gp
if (!exists("in") || !exists("out") || !exists("fits") || !exists("lines") || !exists("ratio")) {
    print "scaling.gp: set in='FILE.tsv', fits='fits.gp', lines=, ratio= and out='DIR'"; exit status 1
}
if (!exists("caption")) caption = in
if (!exists("here")) here = "plots"
load fits   # variants masks nvar nmask; t_/c_/x_<mask>_<i>; ranges n_lo.. and has_<what>_<mask>

cw = 1400
ch = 820
load here."/common.gp"
keyrows = nvar <= 8 ? nvar : int((nvar + 1) / 2)
if (keyrows < 1) keyrows = 1
ch = ch + keyrows * keyrow_px

set datafile separator tab
set datafile columnheaders
set datafile missing "nan"
sel(v, mk) = (strcol('variant') eq v && strcol('mask') eq mk && strcol('status') eq 'ok')
color(i) = series_color(i)
set style line 99 lc rgb "#dddddd"
set grid ls 99
set logscale xy
set format x "%g"
eval "set xtics ".nvtics    # the measured lengths (at most about 10 labels), from fits.gp
set format y "10^{%L}"
set xrange [n_lo:n_hi]
nodata(what) = sprintf("no %s in this table", what)

do for [fmt in "png svg"] {
    if (fmt eq "png") {
        set terminal pngcairo size cw,ch enhanced font "Sans,10" linewidth 1.3
    } else {
        set terminal svg size cw,ch enhanced font "Sans,10" linewidth 1.3 background "white"
    }

    # ---- time vs length ----------------------------------------------------------------------
    set output out."/time.".fmt
    set multiplot title "Time per execute against sequence length (log-log)" font ",14"
    set label 99 caption at screen 0.01, px_y(12) left font ",8" textcolor rgb "#444444" noenhanced
    set xlabel "sequence length n"
    set ylabel "median time per execute [s]"
    set yrange [t_lo:t_hi]
    do for [j=1:nmask] {
        mk = word(masks, j)
        eval panel(1, j, 1, nmask, keyrows)
        set key font ",8" spacing 0.9 box opaque samplen 3
        set title mk font ",12"
        if (value("has_t_".mk)) { unset label 98 } else {
            set label 98 nodata("measured points for ".mk) at graph 0.5, 0.5 center
        }
        plot for [i=1:nvar] in using 'n':(sel(word(variants, i), mk) ? column('median_s') : NaN):'ci_lo_s':'ci_hi_s' \
                 with yerrorbars lc rgb color(i) pt series_pt(i) ps 0.8 notitle, \
             for [i=1:nvar] lines using (strcol(1) eq word(variants, i) && strcol(2) eq mk ? $3 : NaN):4 \
                 with lines lc rgb color(i) dt series_dt(i) notitle, \
             for [i=1:nvar] NaN with linespoints lc rgb color(i) dt series_dt(i) pt series_pt(i) ps 0.8 \
                 title value(sprintf("t_%s_%d", mk, i))
        unset label 99
    }
    unset label 98
    unset multiplot

    # ---- memory vs length (first mask) -------------------------------------------------------
    mk = word(masks, 1)
    set output out."/memory.".fmt
    set multiplot title sprintf("Memory against sequence length (%s)", mk) font ",14"
    set label 99 caption at screen 0.01, px_y(12) left font ",8" textcolor rgb "#444444" noenhanced
    eval panel(1, 1, 1, 2, keyrows)
    set key font ",8" box opaque samplen 3
    set title "plan working memory (rk\\_attn\\_bytes)" font ",12"
    set ylabel "bytes"
    set yrange [mem_lo:mem_hi]
    if (has_mem) { unset label 98 } else { set label 98 nodata("plan sizes") at graph 0.5, 0.5 center }
    plot for [i=1:nvar] in using 'n':(sel(word(variants, i), mk) && column('plan_bytes') > 0 ? column('plan_bytes') : NaN) \
        with linespoints lc rgb color(i) dt series_dt(i) pt series_pt(i) ps 0.8 title word(variants, i)
    unset label 99
    eval panel(1, 2, 1, 2, keyrows)
    set key font ",8" box opaque samplen 3
    set title "peak resident set size during the point (VmHWM)" font ",12"
    set ylabel "KiB"
    set yrange [rss_lo:rss_hi]
    if (has_rss) { unset label 98 } else { set label 98 nodata("RSS readings (not on Linux?)") at graph 0.5, 0.5 center }
    plot for [i=1:nvar] in using 'n':(sel(word(variants, i), mk) && column('rss_peak_kb') > 0 ? column('rss_peak_kb') : NaN) \
        with linespoints lc rgb color(i) dt series_dt(i) pt series_pt(i) ps 0.8 title word(variants, i)
    unset label 98
    unset multiplot

    # ---- throughput --------------------------------------------------------------------------
    set output out."/throughput.".fmt
    set multiplot title "Throughput against sequence length" font ",14"
    set label 99 caption at screen 0.01, px_y(12) left font ",8" textcolor rgb "#444444" noenhanced
    set ylabel "tokens per second"
    set yrange [tp_lo:tp_hi]
    do for [j=1:nmask] {
        mk = word(masks, j)
        eval panel(1, j, 1, nmask, keyrows)
        set key font ",8" box opaque samplen 3
        set title mk font ",12"
        if (value("has_t_".mk)) { unset label 98 } else {
            set label 98 nodata("measured points for ".mk) at graph 0.5, 0.5 center
        }
        plot for [i=1:nvar] in using 'n':(sel(word(variants, i), mk) ? column('tokens_per_s') : NaN) \
            with linespoints lc rgb color(i) dt series_dt(i) pt series_pt(i) ps 0.8 title word(variants, i)
        unset label 99
    }
    unset label 98
    unset multiplot

    # ---- crossover ---------------------------------------------------------------------------
    set output out."/crossover.".fmt
    set multiplot title "Linear variants against exact attention: time ratio" font ",14"
    set label 99 caption at screen 0.01, px_y(12) left font ",8" textcolor rgb "#444444" noenhanced
    set ylabel "time(variant) / time(exact reference)"
    set format y "%g"
    set yrange [r_lo:r_hi]
    do for [j=1:nmask] {
        mk = word(masks, j)
        eval panel(1, j, 1, nmask, keyrows)
        set key font ",8" box opaque samplen 3
        set title mk." (below 1: faster than exact; crossover marked)" font ",12"
        if (value("has_r_".mk)) { unset label 98 } else {
            set label 98 nodata("linear variant with its exact reference") at graph 0.5, 0.7 center
            unset key
        }
        plot 1 with lines lc rgb "#000000" dt 2 notitle, \
             for [i=1:nvar] ratio using (strcol(1) eq word(variants, i) && strcol(2) eq mk ? $3 : NaN):4:5:6 \
                 with yerrorlines lc rgb color(i) dt series_dt(i) pt series_pt(i) ps 0.8 \
                 title value(sprintf("c_%s_%d", mk, i)), \
             for [i=1:nvar] '+' using (value(sprintf("x_%s_%d", mk, i))):(1.0) every ::0::0 \
                 with points lc rgb color(i) pt 6 ps 2 notitle
        unset label 99
    }
    unset label 98
    unset multiplot
    set format y "10^{%L}"
}
