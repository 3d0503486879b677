"""Benchmark instruments of the command line: the suite (`torchwm.bench.suite`: its table of environments and
targets, the commit stamp of every row, its plot). Plots need the ``plots`` extra; without matplotlib the JSON is
written all the same."""
