# Figures of `ropekit approx` from its TSV (and the fit file plots/approx.sh derives from the
# TSV's '# summary' lines). Writes OUT/error_m, rope_m, error_norm (.png and .svg):
#   error_m     FAVOR+ (first variant) error vs m, log-log, one column per kernel: output error
#               (top) and attention row-sum error (bottom), iid and orthogonal, mean over seeds
#               with its CI, the fitted lines log e = a + b log m with b in the legend (theory -1/2)
#   rope_m      output error vs m for each variant (RoPE forms against softmax + RoPE)
#   error_norm  output and row-sum error against |q|^2/sqrt(d) at a fixed m (log y): the
#               exponential growth with the input norm
#   gnuplot -e "in='approx.tsv'; fits='fits.gp'; lines='fitlines.tsv'; norms='norm.tsv';
#               out='DIR'; caption='...'" \
#       plots/approx.gp
if (!exists("in") || !exists("out") || !exists("fits")) {
    print "approx.gp: set in='FILE.tsv', fits='fits.gp', lines= and out='DIR'"; exit status 1
}
if (!exists("caption")) caption = in
load fits   # variants kernels projs nvar nker nsel msel; titles s_/r_<v>_<kernel>_<proj>

set datafile separator tab
set datafile columnheaders
set datafile missing "nan"
selm(v, k, p) = (strcol('variant') eq v && strcol('kernel') eq k && strcol('proj') eq p && strcol('norm') eq nsel)
seln(v, k, p) = (strcol('variant') eq v && strcol('kernel') eq k && strcol('proj') eq p && column('m') == msel)
fitsel(v, k, p, what) = (strcol(1) eq v && strcol(2) eq k && strcol(3) eq p && strcol(4) eq nsel && strcol(5) eq what)
color(i) = word("#1f77b4 #d62728 #2ca02c #ff7f0e #9467bd #8c564b", (i - 1) % 6 + 1)
pcolor(p) = (p eq "iid" ? "#d62728" : "#1f77b4")
set style line 99 lc rgb "#dddddd"
set grid ls 99
v1 = word(variants, 1)

do for [fmt in "png svg"] {
    if (fmt eq "png") {
        set terminal pngcairo size 1500,900 enhanced font "Sans,10" linewidth 1.3
    } else {
        set terminal svg size 1500,900 enhanced font "Sans,10" linewidth 1.3 background "white"
    }

    # ---- error vs m, per kernel: output (top), row sums (bottom) ------------------------------
    set output out."/error_m.".fmt
    set multiplot layout 2,nker title sprintf("%s against exact softmax: relative error vs features m (|q| = |k| = %s, log-log)", v1, nsel) \
        font ",14" margins 0.06, 0.99, 0.09, 0.92 spacing 0.06, 0.1
    set label 99 caption at screen 0.01, 0.015 left font ",8" textcolor rgb "#444444" noenhanced
    set logscale xy
    set format y "10^{%L}"
    set xlabel "random features m"
    set key bottom left Left reverse font ",8" box opaque
    do for [what in "out rowsum"] {
        do for [kk=1:nker] {
            k = word(kernels, kk)
            set title sprintf("%s features: %s", k, what eq "out" ? "output |O~-O|_F/|O|_F" : "row sums |D~-D|/|D|") font ",11" noenhanced
            set ylabel (kk == 1 ? (what eq "out" ? "relative output error" : "relative row-sum error") : "")
            plot for [p in projs] in using 'm':(selm(v1, k, p) ? column(what."_err_mean") : NaN):(column(what."_err_lo")):(column(what."_err_hi")) \
                     with yerrorbars lc rgb pcolor(p) pt 7 ps 0.6 notitle, \
                 for [p in projs] lines using (fitsel(v1, k, p, what) ? $6 : NaN):7 with lines lc rgb pcolor(p) dt 2 \
                     title value(sprintf("%s_1_%s_%s", what eq "out" ? "s" : "r", k, p))
            unset label 99
        }
    }
    unset multiplot

    # ---- RoPE forms: output error vs m per kernel ------------------------------------------------
    set output out."/rope_m.".fmt
    set multiplot layout 1,nker title sprintf("Output error vs m for each variant (against its exact reference; |q| = |k| = %s)", nsel) \
        font ",14" margins 0.06, 0.99, 0.12, 0.90 spacing 0.05
    set label 99 caption at screen 0.01, 0.02 left font ",8" textcolor rgb "#444444" noenhanced
    set ylabel "relative output error"
    do for [kk=1:nker] {
        k = word(kernels, kk)
        set title k." features (solid: orthogonal, dashed: iid)" font ",11"
        set ylabel (kk == 1 ? "relative output error" : "")
        plot for [i=1:nvar] for [p in projs] in using 'm':(selm(word(variants, i), k, p) ? column('out_err_mean') : NaN) \
                 with linespoints lc rgb color(i) dt 1+(p eq "iid") pt 7 ps 0.5 \
                 title (p eq word(projs, 1) ? value(sprintf("v_%d", i)) : "")
        unset label 99
    }
    unset multiplot

    # ---- error vs input norm at m = msel -------------------------------------------------------
    set output out."/error_norm.".fmt
    set multiplot layout 1,2 title sprintf("%s: error against the input norm at m = %d (log y)", v1, msel) \
        font ",14" margins 0.06, 0.99, 0.12, 0.90 spacing 0.07
    set label 99 caption at screen 0.01, 0.02 left font ",8" textcolor rgb "#444444" noenhanced
    unset logscale x
    set format x "%g"
    set xlabel "|q|^2 / sqrt(d)   (|q| = |k|)"
    set key top left Left reverse font ",8" box opaque
    do for [what in "out rowsum"] {
        set title (what eq "out" ? "output error" : "row-sum error") font ",11"
        set ylabel (what eq "out" ? "relative output error" : "relative row-sum error")
        c0 = (what eq "out" ? 4 : 7)
        plot for [kk=1:nker] for [p in projs] norms using (strcol(1) eq word(kernels, kk) && strcol(2) eq p ? $3 : NaN):c0:c0+1:c0+2 \
                 with yerrorlines lc rgb color(kk) dt 1+(p eq "iid") pt 7 ps 0.5 \
                 title sprintf("%s, %s", word(kernels, kk), p)
        unset label 99
    }
    unset multiplot
    set logscale x
}
