"""`countnet sweep`: the seed documents' controlled experiment. Runs that each change one
option from a baseline (or every combination, ``grid``), each repeated over seeds 0..N-1,
summarised as mean ± std over seeds.

A sweep folder holds sweep.json (what was asked), one ordinary run folder per (point,
seed) named ``<point>-seed<k>`` (so ``countnet report`` and ``predict`` take them as they
are), and the summaries: sweep.csv (one row per run), summary.csv (one row per point),
sweep.md, sweep_error.png (error against each swept option, ± std bars) and
sweep_curves.png (every point's learning curve, mean over seeds, band = ± std).

Rerunning a sweep skips its finished runs and resumes an interrupted one (the run's own
--resume); a finished run trained with other options is refused, not silently reused.

``spec``: what to run (Sweep, Point, sweep.json); ``checks``: finished runs and the checks
before any run starts; ``runner``: run_sweep; ``results``: sweep.csv, summary.csv and
sweep.md; ``figures``: its two plots. This package imports nothing itself: the workflow
reads ``spec`` and ``checks`` every time it parses the Snakefile, so they stay light.
"""
