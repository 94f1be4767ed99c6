"""Workload generators for bench/bench_go.py: one graph (`workload.Workload`), written out as an
e3 package and as the equivalent Makefile, dodo.py, Snakefile and dvc.yaml."""
