# Figures of `ropekit approx` from its TSV (and the file fits.gp that plots/approx.sh derives
# from the TSV's rows and '# summary' lines: lists, legend titles, axis ranges). Writes
# OUT/error_m, rope_m, error_norm (.png and .svg):
#   error_m     FAVOR+ (first variant) error vs m, log-log, one column per kernel: output error
#               (top) and attention row-sum error (bottom), iid and orthogonal, mean over seeds
#               with its CI, the fitted lines log e = a + b log m with b in the legend (theory
#               -1/2). The two projections have their own colour, marker and dash; their points
#               are dodged by a few percent in m so that neither hides the other's interval
#   rope_m      output error vs m for each variant (the RoPE forms against softmax + RoPE), one
#               panel per kernel (columns) and projection (rows); every variant has its own
#               colour, dash and marker, so curves on top of each other stay visible
#   error_norm  output and row-sum error against |q|^2/sqrt(d) at a fixed m (log y): the
#               exponential growth with the input norm
# Every subset of variants, kernels, projections, norms and m works; a panel without data says
# so. The x range is the measured m with a margin, so no tick label is clipped.
#   gnuplot -e "in='approx.tsv'; fits='fits.gp'; lines='fitlines.tsv'; norms='norm.tsv';
#               out='DIR'; here='plots'; caption='...'" plots/approx.gp
if (!exists("in") || !exists("out") || !exists("fits") || !exists("lines") || !exists("norms")) {
    print "approx.gp: set in='FILE.tsv', fits='fits.gp', lines=, norms= and out='DIR'"; exit status 1
}
if (!exists("caption")) caption = in
if (!exists("here")) here = "plots"
load fits   # variants kernels projs nvar nker nsel msel; s_/r_<v>_<kernel>_<proj>; ranges

nproj = words(projs)
set datafile separator tab
set datafile columnheaders
set datafile missing "nan"
selm(v, k, p) = (strcol('variant') eq v && strcol('kernel') eq k && strcol('proj') eq p && strcol('norm') eq nsel)
fitsel(v, k, p, what) = (strcol(1) eq v && strcol(2) eq k && strcol(3) eq p && strcol(4) eq nsel && strcol(5) eq what)
# a projection's style: iid red open squares dashed, orthogonal blue filled circles solid
pcolor(p) = (p eq "iid" ? "#d62728" : "#1f77b4")
ppt(p) = (p eq "iid" ? 4 : 7)
pdt(p) = (p eq "iid" ? 2 : 1)
dodge(p) = (nproj > 1 ? (p eq "iid" ? 0.96 : 1.04) : 1.0)
set style line 99 lc rgb "#dddddd"
set grid ls 99
v1 = word(variants, 1)
nodata = "no data for this panel in the table"

do for [fmt in "png svg"] {
    # ---- error vs m, per kernel: output (top), row sums (bottom) ------------------------------
    cw = 520 * nker + 40
    cw = (cw < 900) ? 900 : cw
    ch = 980
    load here."/common.gp"
    if (fmt eq "png") {
        set terminal pngcairo size cw,ch enhanced font "Sans,10" linewidth 1.3
    } else {
        set terminal svg size cw,ch enhanced font "Sans,10" linewidth 1.3 background "white"
    }
    set output out."/error_m.".fmt
    set multiplot title sprintf("%s against exact softmax: relative error vs features m (|q| = |k| = %s, log-log)%s", \
        v1, nsel, nproj > 1 ? "\n{/*0.75 iid and orthogonal points dodged by 4% in m so that both intervals show}" : "") font ",14"
    set label 99 caption at screen 0.01, px_y(12) left font ",8" textcolor rgb "#444444" noenhanced
    set logscale xy
    set format y "10^{%L}"
    set format x "%g"
    eval "set xtics ".mtics
    set xrange [m_lo:m_hi]
    set yrange [err_lo:err_hi]
    set xlabel "random features m"
    top_px = 80
    do for [w=1:2] {
        what = word("out rowsum", w)
        do for [kk=1:nker] {
            k = word(kernels, kk)
            eval panel(w, kk, 2, nker, nproj)
            set key font ",8" box opaque samplen 3
            set title sprintf("%s features: %s", k, what eq "out" ? "output |O~-O|_F/|O|_F" : "row sums |D~-D|/|D|") font ",11" noenhanced
            set ylabel (kk == 1 ? (what eq "out" ? "relative output error" : "relative row-sum error") : "")
            if (has_err) { unset label 98 } else { set label 98 nodata at graph 0.5, 0.5 center }
            plot for [p in projs] in using (column('m') * dodge(p)):(selm(v1, k, p) ? column(what."_err_mean") : NaN):(column(what."_err_lo")):(column(what."_err_hi")) \
                     with yerrorbars lc rgb pcolor(p) pt ppt(p) ps 0.8 notitle, \
                 for [p in projs] lines using (fitsel(v1, k, p, what) ? $6 : NaN):7 with lines lc rgb pcolor(p) dt pdt(p) notitle, \
                 for [p in projs] NaN with linespoints lc rgb pcolor(p) dt pdt(p) pt ppt(p) ps 0.8 \
                     title value(sprintf("%s_1_%s_%s", what eq "out" ? "s" : "r", k, p))
            unset label 99
        }
    }
    unset label 98
    unset multiplot
    top_px = 58

    # ---- every variant: output error vs m, per kernel (columns) and projection (rows) ----------
    ch = 380 * nproj + 120 + nvar * keyrow_px
    load here."/common.gp"
    if (fmt eq "png") {
        set terminal pngcairo size cw,ch enhanced font "Sans,10" linewidth 1.3
    } else {
        set terminal svg size cw,ch enhanced font "Sans,10" linewidth 1.3 background "white"
    }
    set output out."/rope_m.".fmt
    set multiplot title sprintf("Output error vs m for each variant (against its exact reference; |q| = |k| = %s)", nsel) font ",14"
    set label 99 caption at screen 0.01, px_y(12) left font ",8" textcolor rgb "#444444" noenhanced
    set yrange [rope_lo:rope_hi]
    do for [pi=1:nproj] {
        p = word(projs, pi)
        do for [kk=1:nker] {
            k = word(kernels, kk)
            eval panel(pi, kk, nproj, nker, pi == nproj ? nvar : 0)
            if (pi == nproj) { set key font ",8" box opaque samplen 3 } else { unset key }
            set title sprintf("%s features, %s projections", k, p) font ",11"
            set ylabel (kk == 1 ? "relative output error" : "")
            if (has_rope) { unset label 98 } else { set label 98 nodata at graph 0.5, 0.5 center }
            plot for [i=1:nvar] in using 'm':(selm(word(variants, i), k, p) ? column('out_err_mean') : NaN) \
                     with linespoints lc rgb series_color(i) dt series_dt(i) pt series_pt(i) ps 0.8 \
                     title value(sprintf("v_%d", i))
            unset label 99
        }
    }
    unset label 98
    unset multiplot

    # ---- error vs input norm at m = msel -------------------------------------------------------
    nline = nker * nproj
    ch = 700 + nline * keyrow_px
    load here."/common.gp"
    if (fmt eq "png") {
        set terminal pngcairo size 1400,ch enhanced font "Sans,10" linewidth 1.3
    } else {
        set terminal svg size 1400,ch enhanced font "Sans,10" linewidth 1.3 background "white"
    }
    cw = 1400
    set output out."/error_norm.".fmt
    set multiplot title sprintf("%s: error against the input norm at m = %d (log y)", v1, msel) font ",14"
    set label 99 caption at screen 0.01, px_y(12) left font ",8" textcolor rgb "#444444" noenhanced
    unset logscale x
    set format x "%g"
    set xtics autofreq
    set xrange [x_lo:x_hi]
    set yrange [nrm_lo:nrm_hi]
    set xlabel "|q|^2 / sqrt(d)   (|q| = |k|)"
    do for [w=1:2] {
        what = word("out rowsum", w)
        eval panel(1, w, 1, 2, nline)
        set key font ",8" box opaque samplen 3
        set title (what eq "out" ? "output error" : "row-sum error") font ",11"
        set ylabel (what eq "out" ? "relative output error" : "relative row-sum error")
        if (has_nrm) { unset label 98 } else { set label 98 sprintf("no rows at m = %d", msel) at graph 0.5, 0.5 center }
        c0 = (what eq "out" ? 4 : 7)
        plot for [j=1:nline] norms using (strcol(1) eq word(kernels, (j - 1) / nproj + 1) && strcol(2) eq word(projs, (j - 1) % nproj + 1) ? $3 : NaN):c0:c0+1:c0+2 \
                 with yerrorlines lc rgb series_color(j) dt series_dt(j) pt series_pt(j) ps 0.8 \
                 title sprintf("%s, %s", word(kernels, (j - 1) / nproj + 1), word(projs, (j - 1) % nproj + 1))
        unset label 99
    }
    unset label 98
    unset multiplot
    set logscale x
    unset xtics
    set xtics
}
