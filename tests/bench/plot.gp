# plot.gp -- the benchmark chart (tests/bench/report.sh runs it):
#   gnuplot -e "datafile='chart.dat'; outfile='results.png'; subtitle='...'" plot.gp
# chart.dat: "label" req/s@c32 req/s@c128 p99ms@c32 p99ms@c128, one line
# per system/endpoint.  Top: req/s (linear); bottom: p99 (log scale, since
# the peers' tails are orders of magnitude apart).
set terminal pngcairo size 1400,1000 font "DejaVu Sans,10"
set output outfile
set termoption noenhanced
set multiplot layout 2,1 title "waituntil vs bare libfcgi, PHP-FPM, workers-qb/workerd (wrk -t2, 10 s)\n".subtitle
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top right
set xtics rotate by -25 scale 0 font ",9"
set datafile separator "\t"

set title "throughput"
set ylabel "requests/s (median)"
set yrange [0:*]
set offsets 0, 0, graph 0.08, 0
plot datafile using 2:xtic(1) title "c=32" lc rgb "#3a78b5", \
     '' using 3 title "c=128" lc rgb "#e07b2a", \
     '' using ($0 - 0.17):2:(sprintf("%.0f", $2)) with labels rotate by 90 left offset 0,0.3 font ",8" notitle, \
     '' using ($0 + 0.17):3:(sprintf("%.0f", $3)) with labels rotate by 90 left offset 0,0.3 font ",8" notitle

set title "tail latency"
set key top left
set ylabel "p99 ms (median, log scale)"
set logscale y
set yrange [0.1:*]
set offsets 0, 0, 0, 0
plot datafile using 4:xtic(1) title "c=32" lc rgb "#3a78b5", \
     '' using 5 title "c=128" lc rgb "#e07b2a", \
     '' using ($0 - 0.17):4:(sprintf("%.1f", $4)) with labels rotate by 90 left offset 0,0.3 font ",8" notitle, \
     '' using ($0 + 0.17):5:(sprintf("%.1f", $5)) with labels rotate by 90 left offset 0,0.3 font ",8" notitle
unset multiplot
