"""Benchmarks: COBRA, its baselines and ablations side by side, one result file per cell.

A cell is (data set, normal class or category, method, seed). `run_benchmark` trains and
evaluates every cell of a suite that has no result file yet, each in its own process (so peak
memory is the cell's own), and `aggregate` turns the result files into tables and a plot.
"""

from robustad.benchmark.runner import run_cell
from robustad.benchmark.schedule import run_benchmark
from robustad.benchmark.suites import BENCHMARK_SUITES, BenchmarkSuite, Cell, benchmark_suite
from robustad.benchmark.tables import aggregate

__all__ = ["BENCHMARK_SUITES", "BenchmarkSuite", "Cell", "aggregate", "benchmark_suite", "run_benchmark", "run_cell"]
