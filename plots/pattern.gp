# Attention patterns of position encodings from a `ropekit pattern` TSV and the file META that
# plots/pattern.sh derives from it (encodings, titles, families, verdicts, ranges, counts of
# values <= 0): one panel per encoding of the table, three per row, all on the same axes.
# Figure OUT (PNG, SVG): the attention weight against relative distance (mean over the draws
# solid, median dashed, 5-95% band) on a log axis. A log axis cannot show weights <= 0, which
# eq. 19 produces (its rotated numerator can be negative): where the mean or the median is <= 0
# its absolute value is drawn as a marker (down triangle: mean, open circle: median) and the
# panel says at how many distances; a band cut at the axis floor is a 5% quantile <= 0.
# Figure OUT_score: the score; softmax logits on one linear y range; the linear family's
# numerator weights phi(q).phi(k) on one log range (heavy-tailed: the mean sits far above the
# median), with the same marking of values <= 0. Each panel names the shift test's verdict.
#   gnuplot -e "in='pattern.tsv'; meta='pattern.gp.in'; out='pattern'; here='plots';
#               caption='...'" plots/pattern.gp
if (!exists("in") || !exists("out") || !exists("meta")) {
    print "pattern.gp: set in='FILE.tsv', meta='pattern.gp.in' and out='BASENAME'"; exit status 1
}
if (!exists("caption")) caption = in
if (!exists("here")) here = "plots"
load meta   # encs nenc title_/fam_/verdict_/rows_/neg_*_<i>, dmin dmax slo shi llo lhi

ncol = nenc < 3 ? nenc : 3
nrow = (nenc + 2) / 3
cw = 500 * ncol
ch = 420 * nrow + 90
load here."/common.gp"
xlab_px = 62

set datafile separator tab
set datafile columnheaders
isenc(e) = strcol('encoding') eq e
floor_w = 1e-7
clipw(w) = w > floor_w ? w : floor_w
clips(s) = s > llo ? s : llo
negabs(x) = x <= 0 ? (-x > floor_w ? -x : floor_w) : NaN
negabss(x) = x <= 0 ? (-x > llo ? -x : llo) : NaN
neg(what, i) = value(sprintf("neg_%s_%d", what, i))
note_w(i) = sprintf("the log axis cannot show weights <= 0, found here for the\nmean at %d, median at %d, 5%% quantile at %d of %d distances", \
                    neg("wmean", i), neg("wmed", i), neg("wq05", i), value(sprintf("rows_%d", i)))
note_s(i) = sprintf("the log axis cannot show numerators <= 0, found here for the\nmean at %d, median at %d, 5%% quantile at %d of %d distances", \
                    neg("smean", i), neg("smed", i), neg("sq05", i), value(sprintf("rows_%d", i)))

set style textbox opaque margins 2, 2 border lc rgb "#b2182b"

do for [fig = 1:2] {
    do for [fmt in "png svg"] {
        if (fmt eq "png") {
            set terminal pngcairo size cw,ch enhanced font "Sans,11" linewidth 1.3
        } else {
            set terminal svg size cw,ch enhanced font "Sans,11" linewidth 1.3 background "white"
        }
        set output (fig == 1 ? out : out."_score").".".fmt
        set multiplot title (fig == 1 ? "Attention weight against relative distance" \
            : "Attention score against relative distance") font ",15"
        set label 99 caption at screen 0.01, px_y(12) left font ",9" textcolor rgb "#444444" noenhanced
        set grid lc rgb "#dddddd"
        set xrange [dmin:dmax]
        set style fill transparent solid 0.25 noborder
        do for [i = 1:nenc] {
            e = word(encs, i)
            lin = value(sprintf("fam_%d", i)) eq "linear"
            color = lin ? "#d95f02" : "#1f5fbf"
            eval panel((i - 1) / 3 + 1, (i - 1) % 3 + 1, nrow, ncol, 2)
            set key font ",9" samplen 2 box opaque
            set title value(sprintf("title_%d", i)).sprintf("   [exactly relative: %s]", value(sprintf("verdict_%d", i))) font ",11"
            set xlabel ((i - 1) / 3 + 1 == nrow || i + 3 > nenc ? "distance (query - key position)" : "")
            if (fig == 1) {
                set logscale y
                set format y "10^{%T}"
                set yrange [floor_w:1]
                set ylabel ((i - 1) % 3 == 0 ? "weight" : "")
                if (neg("wmean", i) + neg("wmed", i) + neg("wq05", i) > 0) {
                    set label 97 note_w(i) at graph 0.03, graph 0.1 left front boxed font ",8" textcolor rgb "#b2182b"
                } else { unset label 97 }
                plot in using (isenc(e) ? column('distance') : NaN):(clipw(column('weight_q05'))):(clipw(column('weight_q95'))) \
                         with filledcurves lc rgb color title "5-95%", \
                     in using (isenc(e) ? column('distance') : NaN):(column('mean_weight') > 0 ? column('mean_weight') : NaN) \
                         with lines lw 1.5 lc rgb color title "mean", \
                     in using (isenc(e) ? column('distance') : NaN):(column('weight_median') > 0 ? column('weight_median') : NaN) \
                         with lines lw 1.2 dt 2 lc rgb "#333333" title "median", \
                     in using (isenc(e) ? column('distance') : NaN):(negabs(column('mean_weight'))) \
                         with points pt 11 ps 0.7 lc rgb "#b2182b" title (neg("wmean", i) ? "|mean|, mean <= 0" : ""), \
                     in using (isenc(e) ? column('distance') : NaN):(negabs(column('weight_median'))) \
                         with points pt 6 ps 0.7 lc rgb "#333333" title (neg("wmed", i) ? "|median|, median <= 0" : "")
            } else {
                if (lin) {
                    set logscale y
                    set format y "10^{%T}"
                    set yrange [llo:lhi]
                    if (neg("smean", i) + neg("smed", i) + neg("sq05", i) > 0) {
                        set label 97 note_s(i) at graph 0.03, graph 0.1 left front boxed font ",8" textcolor rgb "#b2182b"
                    } else { unset label 97 }
                } else {
                    unset logscale y
                    set format y "%g"
                    set yrange [slo:shi]
                    unset label 97
                }
                set ylabel ((i - 1) % 3 == 0 ? (lin ? "numerator weight" : "logit") : "")
                plot in using (isenc(e) ? column('distance') : NaN):(lin ? clips(column('score_q05')) : column('score_q05')):'score_q95' \
                         with filledcurves lc rgb color title "5-95%", \
                     in using (isenc(e) ? column('distance') : NaN):(!lin || column('mean_score') > 0 ? column('mean_score') : NaN) \
                         with lines lw 1.5 lc rgb color title "mean", \
                     in using (isenc(e) ? column('distance') : NaN):(!lin || column('score_median') > 0 ? column('score_median') : NaN) \
                         with lines lw 1.2 dt 2 lc rgb "#333333" title "median", \
                     in using (isenc(e) && lin ? column('distance') : NaN):(negabss(column('mean_score'))) \
                         with points pt 11 ps 0.7 lc rgb "#b2182b" title (lin && neg("smean", i) ? "|mean|, mean <= 0" : ""), \
                     in using (isenc(e) && lin ? column('distance') : NaN):(negabss(column('score_median'))) \
                         with points pt 6 ps 0.7 lc rgb "#333333" title (lin && neg("smed", i) ? "|median|, median <= 0" : "")
            }
            unset label 99
        }
        unset label 97
        unset multiplot
        set output
    }
}
