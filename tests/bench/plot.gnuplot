# The chart of tests/bench/e2e.sh: throughput per contender (records/s, same input, same
# broker) and Tally's snapshot latency (p50, p99).
#
#   gnuplot -e "datafile='e2e.dat'; latfile='e2e-latency.dat'; latwords=100000; outfile='e2e.png'; subtitle='...'" plot.gnuplot
#
# datafile: one line per contender, "NAME" RECORDS_PER_SECOND SLOWER_RUN_RECORDS_PER_SECOND
# (the faster run is the bar, the slower one a black tick on it; 0: not measured);
# latfile: "p50" MS and "p99" MS; latwords: the distinct words counted when the latency
# was measured; subtitle (optional): a second title line (the input, the load). PNG
# through the pngcairo terminal, or gnuplot's own png terminal (libgd) when cairo is not
# built in.

if (strstrt(GPVAL_TERMINALS, "pngcairo") > 0) {
  set terminal pngcairo size 1400,520 font "sans,11"
} else {
  set terminal png size 1400,520
}
set output outfile

# The largest values, for ranges with room for the labels above the bars.
stats datafile using 2 nooutput
rate_max = STATS_max
stats latfile using 2 nooutput
lat_max = STATS_max

if (!exists("subtitle")) subtitle = ""
set multiplot layout 1,2 title "Tally end to end on a real Apache Kafka broker".(subtitle eq "" ? "" : "\n".subtitle)
set style fill solid 0.8 border -1
set boxwidth 0.6
set grid ytics
set yrange [0:*]
unset key

set title "Throughput (records/s, higher is better)"
set ylabel "thousand records/s"
set yrange [0:(rate_max > 0 ? rate_max : 1) / 1000 * 1.15]
set xtics rotate by -30
plot datafile using 0:($2/1000):xtic(1) with boxes lc rgb "#4477aa", \
     '' using ($0-0.2):($3/1000):(0.4):(0) with vectors nohead lw 2 lc rgb "black", \
     '' using 0:($2/1000):(sprintf("%.0f k", $2/1000)) with labels offset 0,1
set xtics norotate

set title sprintf("Snapshot latency, %d distinct words (lower is better)", latwords)
set ylabel "ms, request produced to last part received"
set yrange [0:(lat_max > 50 ? lat_max : 50) * 1.15]
set key top left
plot latfile using 0:2:xtic(1) with boxes lc rgb "#cc6677" notitle, \
     '' using 0:2:(sprintf("%.1f ms", $2)) with labels offset 0,1 notitle, \
     50 with lines dt 2 lc rgb "black" title "target: p99 under 50 ms"

unset multiplot
