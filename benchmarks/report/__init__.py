"""The report: pure functions of results/raw -> results/tables, results/plots, results/README.md.
build (reads the raw files, orders the sections), base (formats, tables), plots, heatmaps, and
one module per section: tuning, quality, convergence, scan, ablations, kernels."""
