# Draws the growth curve written by scripts/growth-curve.sh:
# server RSS with N idle registered connections, and fan-out messages/s to
# one user with N connections.
#
#   gnuplot -e "csv='docs/growth.csv'; png='docs/growth.png'" scripts/growth.gp

if (!exists("csv")) csv = 'docs/growth.csv'
if (!exists("png")) png = 'docs/growth.png'

set datafile separator ','
set terminal pngcairo size 900,340 font 'sans,10'
set output png

set key off
set grid lc rgb '#dddddd'
set border lc rgb '#555555'
set xlabel 'connections'
# Room left of the first point and right of the last for their labels.
set xrange [-2000:22000]
set xtics 0, 5000, 20000
set format x '%.0s%c'
set offsets 0, 0, graph 0.25, 0

set multiplot layout 1,2 title 'wspush growth curve (fresh server per point, medians)'

set title 'RSS, idle registered connections'
set ylabel 'RSS (MiB)'
set yrange [0:*]
plot csv using 1:2 skip 1 with linespoints lw 2 pt 7 lc rgb '#1f77b4', \
     '' using 1:2:(sprintf('%.1f MiB', $2)) skip 1 with labels offset 0,1 font 'sans,9'

set title 'fan-out, one user with N connections'
set ylabel 'messages/s (thousands)'
set yrange [0:*]
plot csv using 1:($5/1000) skip 1 with linespoints lw 2 pt 7 lc rgb '#d62728', \
     '' using 1:($5/1000):(sprintf("%.0fk/s\np99 %.0f ms", $5/1000, $7)) skip 1 with labels offset 0,1.6 font 'sans,9'

unset multiplot
