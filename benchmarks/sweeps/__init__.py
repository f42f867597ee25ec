"""Sweeps of training cells: profiles (sizes and budgets), cell (one run and its row), store (the
resumable CSV), sweep + executors (where cells run), progress, and the sweeps themselves:
tuning, quality, ablations (+ alignment_stats), and runner (`make bench`)."""
