# Figures of `ropekit train --compare` (plots/train.sh prepares the blocks and the lists).
# Writes OUT/bpc, paired, extrapolation, timing (.png and .svg):
#   bpc            validation bits per character against step, mean over the seeds with its 95%
#                  confidence band (t-interval), one colour per arm: Figure 3 (right) in small
#   paired         RoPE arm minus its baseline (same seed, same data order and initialisation),
#                  mean and band against step; below the zero line RoPE is ahead
#   extrapolation  bits per character against evaluation length (log2 axis), one panel per arm,
#                  one line per RoPE scaling, bars from the seeds' interval
#   timing         tokens per second (left) and the share of the step time per part (right)
#   gnuplot -e "meta='train.gp.in'; curves='curves.dat'; paired='paired.dat';
#               extrap='extrap.dat'; timing='timing.dat'; out='DIR'; caption='...'" plots/train.gp
if (!exists("meta") || !exists("curves") || !exists("paired") || !exists("extrap") || \
    !exists("timing") || !exists("out")) {
    print "train.gp: set meta=, curves=, paired=, extrap=, timing= and out='DIR'"; exit status 1
}
if (!exists("caption")) caption = ""
load meta    # narms arm_<i>; npairs pair_<i>; xarms xarm_<i> xblocks xb_<i>_arm xb_<i>_scaling
             # lmin lmax; tarms

color(i) = word("#1f77b4 #d62728 #2ca02c #ff7f0e #9467bd #8c564b #e377c2 #17becf #7f7f7f #bcbd22", (i - 1) % 10 + 1)
scolor(s) = (s eq "none" ? "#000000" : s eq "linear" ? "#1f77b4" : s eq "ntk" ? "#2ca02c" : "#d62728")
spt(s) = (s eq "none" ? 7 : s eq "linear" ? 5 : s eq "ntk" ? 9 : 11)
set style line 99 lc rgb "#dddddd"
set grid ls 99
set datafile separator tab
set datafile missing "nan"

do for [fmt in "png svg"] {
    if (fmt eq "png") {
        set terminal pngcairo size 1100,650 enhanced font "Sans,10" linewidth 1.4
    } else {
        set terminal svg size 1100,650 enhanced font "Sans,10" linewidth 1.4 background "white"
    }

    # ---- validation bpc against step ---------------------------------------------------------
    set output out."/bpc.".fmt
    set title "Validation bits per character during training (mean over seeds, 95% CI band)" font ",13"
    set label 99 caption at screen 0.01, 0.015 left font ",7" textcolor rgb "#444444" noenhanced
    set xlabel "optimizer step"
    set ylabel "validation bits per character"
    set key top right box opaque font ",9" noenhanced
    set autoscale
    if (yhi == yhi && ylo == ylo && yhi > ylo) { set yrange [ylo:yhi] }
    set style fill transparent solid 0.18 noborder
    set bmargin 5
    plot for [i=1:narms] curves index (i - 1) using 1:3:4 with filledcurves lc rgb color(i) notitle, \
         for [i=1:narms] curves index (i - 1) using 1:2 with linespoints lc rgb color(i) pt 7 ps 0.5 \
             title value(sprintf("arm_%d", i))
    unset label 99

    # ---- paired differences ------------------------------------------------------------------
    set output out."/paired.".fmt
    set title "RoPE arm minus its baseline, paired by seed (mean, 95% CI band; below 0: RoPE ahead)" font ",13"
    set label 99 caption at screen 0.01, 0.015 left font ",7" textcolor rgb "#444444" noenhanced
    set autoscale y
    set ylabel "difference in validation bits per character"
    set key top right box opaque font ",9" noenhanced
    if (npairs > 0) {
        plot 0 with lines lc rgb "#888888" dt 2 notitle, \
             for [i=1:npairs] paired index (i - 1) using 1:3:4 with filledcurves lc rgb color(i) notitle, \
             for [i=1:npairs] paired index (i - 1) using 1:2 with linespoints lc rgb color(i) pt 7 ps 0.5 \
                 title value(sprintf("pair_%d", i))
    } else {
        set label 98 "no RoPE arm with a baseline in this comparison" at graph 0.5, 0.5 center
        plot 0 with lines lc rgb "#888888" dt 2 notitle
        unset label 98
    }
    unset label 99

    # ---- length extrapolation ----------------------------------------------------------------
    set output out."/extrapolation.".fmt
    ncol = (xarms > 3 ? 3 : (xarms > 0 ? xarms : 1))
    nrow = (xarms > 0 ? int((xarms + ncol - 1) / ncol) : 1)
    set multiplot layout nrow, ncol title "Length extrapolation: bits per character against evaluation length (mean over seeds, 95% CI)" font ",12"
    set logscale x 2
    set xrange [lmin / 1.3 : lmax * 1.3]
    set xlabel "evaluation length (tokens)"
    set ylabel "bits per character"
    set key top left box opaque font ",8" noenhanced
    set style fill empty
    unset title
    do for [a=1:(xarms > 0 ? xarms : 1)] {
        if (xarms > 0) {
            set title value(sprintf("xarm_%d", a)) font ",10" noenhanced
            plot for [b=1:xblocks] extrap index (b - 1) \
                     using 1:(value(sprintf("xb_%d_arm", b)) == a ? $2 : NaN):3:4 with yerrorlines \
                     lc rgb scolor(value(sprintf("xb_%d_scaling", b))) pt spt(value(sprintf("xb_%d_scaling", b))) ps 0.7 \
                     title (value(sprintf("xb_%d_arm", b)) == a ? value(sprintf("xb_%d_scaling", b)) : "")
        } else {
            set label 98 "no extrapolation rows" at graph 0.5, 0.5 center
            plot 0 notitle
            unset label 98
        }
    }
    unset multiplot
    unset logscale x
    set autoscale x

    # ---- timing ------------------------------------------------------------------------------
    set output out."/timing.".fmt
    set multiplot layout 1, 2 title "Training throughput and where the step time goes (mean over seeds)" font ",12" \
        margins 0.08, 0.84, 0.18, 0.9 spacing 0.1
    set datafile columnheaders
    set style data histograms
    set style histogram clustered gap 1
    set style fill solid 0.8 border -1
    set boxwidth 0.8
    unset title
    set xlabel ""
    set xtics rotate by -30 noenhanced font ",8"
    set ylabel "tokens per second"
    set yrange [0:*]
    unset key
    plot timing using 2:xtic(1) lc rgb "#1f77b4" notitle
    set style histogram rowstacked
    set ylabel "share of step time (%)"
    set yrange [0:105]
    set key at screen 0.995, 0.85 right top font ",8" noenhanced width 1.5
    plot for [j=4:11] timing using j:xtic(1) lc rgb color(j - 3) title columnhead(j)
    unset multiplot
    unset datafile columnheaders
    set style data points
    set xtics norotate font ",10"
    set autoscale
}
