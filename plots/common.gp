# Shared by the plots/*.gp scripts (load it after setting cw, ch: the canvas size in pixels).
#
# Panels on a grid of nr x nc cells, each with its own key BELOW its x axis label, outside the
# data: `eval panel(r, c, nr, nc, keyrows)` sets the margins of cell (r, c) (1-based, row 1 at
# the top) and puts the key under it in `keyrows` rows. The whole grid sits between the figure
# title (top_px) and the caption line (bottom_px). Distances are in pixels, so the layout does
# not depend on the canvas size.
top_px = 58         # figure title
bottom_px = 26      # caption line
title_px = 30       # a panel's title
left_px = 78        # y tick labels and y label
right_px = 22       # the last x tick label (e.g. "10000") must not be clipped
xlab_px = 52        # x tick labels and x label
keyrow_px = 15      # one key row (font ,8 or ,9)
px_x(p) = p * 1.0 / cw
px_y(p) = p * 1.0 / ch
cell_w(nc) = (1.0 - px_x(4)) / nc
cell_h(nr, keyrows) = (1.0 - px_y(top_px + bottom_px)) / nr
panel(r, c, nr, nc, keyrows) = sprintf( \
    "set lmargin at screen %.5f; set rmargin at screen %.5f; " . \
    "set tmargin at screen %.5f; set bmargin at screen %.5f; " . \
    "set key at screen %.5f, %.5f left top Left reverse maxrows %d", \
    px_x(2) + (c - 1) * cell_w(nc) + px_x(left_px), \
    px_x(2) + c * cell_w(nc) - px_x(right_px), \
    1.0 - px_y(top_px) - (r - 1) * cell_h(nr, keyrows) - px_y(title_px), \
    1.0 - px_y(top_px) - r * cell_h(nr, keyrows) + px_y(xlab_px + keyrows * keyrow_px + 8), \
    px_x(2) + (c - 1) * cell_w(nc) + px_x(left_px) - px_x(10), \
    1.0 - px_y(top_px) - r * cell_h(nr, keyrows) + px_y(keyrows * keyrow_px + 6), \
    keyrows)

# One style per series i (1-based): colour, dash type and point type all differ between
# neighbours, and filled and open markers alternate, so two curves drawn on top of each other
# stay distinguishable.
series_color(i) = word("#1f77b4 #d62728 #2ca02c #ff7f0e #9467bd #8c564b #e377c2 #17becf #7f7f7f #bcbd22 #000000", (i - 1) % 11 + 1)
series_dt(i) = (i - 1) % 5 + 1
series_pt(i) = word("7 4 8 5 6 9 12 13 10 11 14 15 1 2 3", (i - 1) % 15 + 1) + 0
