# Attention patterns of position encodings from a `ropekit pattern` TSV: one panel per encoding,
# all on the same axes. Figure OUT (PNG, SVG): the attention weight against relative distance
# (mean over the draws solid, median dashed, 5-95% band; log scale, so zero or negative weights,
# possible for RoPE eq. 19, are left out). Figure OUT_score: the score; softmax logits in the
# first two rows on one linear y range; the linear family's numerator weights phi(q).phi(k) in
# the last row on one log range (they are heavy-tailed: the mean sits far above the median).
# Each panel names the shift test's verdict. Reads only the TSV.
#   gnuplot -e "in='pattern.tsv'; out='pattern'; caption='...'" plots/pattern.gp
if (!exists("in") || !exists("out")) { print "pattern.gp: set in='FILE.tsv' and out='BASENAME'"; exit status 1 }
if (!exists("caption")) caption = in

set datafile separator tab
set datafile columnheaders
encs = "none sinusoidal t5 alibi rope xpos linear-rope-eq19 linear-rope-qk rpe-fft"
titles = "'no position' 'sinusoidal (eq. 4)' 'T5 buckets (stand-in table)' 'ALiBi' 'RoPE (eq. 16)' 'xPos' 'FAVOR+ RoPE eq. 19' 'FAVOR+ RoPE before the map' 'FAVOR+ FFT bias (ALiBi)'"
isenc(e) = strcol('encoding') eq e
stats in using 'distance' nooutput
xmax = STATS_max
# score ranges: the softmax family and the linear family
stats in using (strcol('family') eq 'softmax' ? column('score_q05') : NaN) nooutput
slo = STATS_min
stats in using (strcol('family') eq 'softmax' ? column('score_q95') : NaN) nooutput
shi = STATS_max
stats in using (strcol('family') eq 'linear' && column('score_q05') > 0 ? column('score_q05') : NaN) nooutput
llo = STATS_min
stats in using (strcol('family') eq 'linear' ? column('score_q95') : NaN) nooutput
lhi = STATS_max
pad(lo, hi) = 0.05 * (hi - lo)
floor_w = 1e-7
clipw(w) = w > floor_w ? w : floor_w
clips(s) = s > llo / 2 ? s : llo / 2
# the shift test's verdict of an encoding (first row of that encoding)
verdict(e) = system(sprintf("awk -F'\\t' '$1==\"%s\" {print $NF; exit}' '%s'", e, in))

do for [fig = 1:2] {
    do for [fmt in "png svg"] {
        if (fmt eq "png") {
            set terminal pngcairo size 1500,1150 enhanced font "Sans,11" linewidth 1.3
        } else {
            set terminal svg size 1500,1150 enhanced font "Sans,11" linewidth 1.3 background "white"
        }
        set output (fig == 1 ? out : out."_score").".".fmt
        set multiplot layout 3,3 title (fig == 1 ? "Attention weight against relative distance" \
            : "Attention score against relative distance") font ",15" \
            margins 0.06, 0.99, 0.08, 0.93 spacing 0.05, 0.09
        set label 99 caption at screen 0.01, 0.015 left font ",9" textcolor rgb "#444444" noenhanced
        set grid lc rgb "#dddddd"
        set xrange [0:xmax]
        set style fill transparent solid 0.25 noborder
        set key top right font ",9" samplen 2 box opaque
        do for [i = 1:9] {
            e = word(encs, i)
            lin = i > 6
            set title word(titles, i).sprintf("   [exactly relative: %s]", verdict(e)) font ",11"
            set xlabel (i > 6 ? "distance (query - key position)" : "")
            if (fig == 1) {
                set logscale y
                set format y "10^{%T}"
                set yrange [floor_w:1]
                set ylabel (i % 3 == 1 ? "weight" : "")
                plot in using (isenc(e) ? column('distance') : NaN):(clipw(column('weight_q05'))):(clipw(column('weight_q95'))) \
                         with filledcurves lc rgb (lin ? "#d95f02" : "#1f5fbf") notitle, \
                     in using (isenc(e) ? column('distance') : NaN):'mean_weight' with lines lw 1.5 \
                         lc rgb (lin ? "#d95f02" : "#1f5fbf") title "mean", \
                     in using (isenc(e) ? column('distance') : NaN):'weight_median' with lines lw 1.2 \
                         dt 2 lc rgb "#333333" title "median"
            } else {
                if (lin) {
                    set logscale y
                    set format y "10^{%T}"
                    set yrange [llo / 2:lhi * 2]
                } else {
                    unset logscale y
                    set format y "%g"
                    set yrange [slo - pad(slo, shi):shi + pad(slo, shi)]
                }
                set ylabel (i % 3 == 1 ? (lin ? "numerator weight" : "logit") : "")
                plot in using (isenc(e) ? column('distance') : NaN):(lin ? clips(column('score_q05')) : column('score_q05')):'score_q95' \
                         with filledcurves lc rgb (lin ? "#d95f02" : "#1f5fbf") notitle, \
                     in using (isenc(e) ? column('distance') : NaN):'mean_score' with lines lw 1.5 \
                         lc rgb (lin ? "#d95f02" : "#1f5fbf") title "mean", \
                     in using (isenc(e) ? column('distance') : NaN):'score_median' with lines lw 1.2 \
                         dt 2 lc rgb "#333333" title "median"
            }
        }
        unset multiplot
        unset label 99
        set output
    }
}
