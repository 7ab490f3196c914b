"""Sightline's services. Every process starts here (the `sightline` command: server, workers, benchmarks), so the
settings the numeric libraries read once, when first loaded, are set here, before any of them is imported.

OpenBLAS's threads spin for about 2^28 cycles (~0.1 s) after each product before they sleep. A photo search's exact
scan is one such product, and the spinning thread then holds a core the models of the next steps need. With 2^4,
`bench photo-search` at 100k: p50 110–145 → 93–106 ms a query, CPU 210–273 → 165–191 ms (4 runs alternated). An
operator's own value wins.
"""
import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
