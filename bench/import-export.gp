# Throughput against image size from `BENCH_PLOT=FILE npm run bench:import`:
#   gnuplot -e "data='FILE'; out='docs/bench-import.png'" bench/import-export.gp
set terminal pngcairo size 800,450 font ",10"
set output out
set title "imgswarm import and export against sha256sum (same runs, shared 2-core machine)"
set xlabel "image size (MiB)"
set ylabel "MB/s (10^6 bytes/s, median of rounds)"
set logscale x 2
set xtics (512, 1024, 2048, 4096)
set xrange [400:5200]
set yrange [0:*]
set key top left
set grid ytics
plot data using 1:4 with linespoints lw 2 pt 7 title "sha256sum", \
     data using 1:3 with linespoints lw 2 pt 5 title "imgswarm export", \
     data using 1:2 with linespoints lw 2 pt 9 title "imgswarm import"
