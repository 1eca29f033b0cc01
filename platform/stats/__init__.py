"""Statistics for seed-variance studies: pure functions and typed results over per-run values.

Modules:

- ``table``: a results table (``Run`` rows; ``read_table`` for CSV/Parquet with one-line errors).
- ``summary``: one setting over seeds: mean, t interval (studentized bootstrap from n = 20),
  chi-square CI for sigma, IQM; NaN values (failed runs) excluded with a warning.
- ``compare``: the tests and intervals: Welch, paired t, tie-exact Mann-Whitney, Wilcoxon
  signed-rank and sign-flip permutation p, P(A > B) with Newcombe's interval, TOST, Hedges' g,
  Holm.
- ``power``: seeds per setting for two-sample and paired t tests via the non-central t.
- ``components``: decompose designs: components net of nondeterminism with MLS intervals; the
  validation-set share of seed variance from paired image bootstraps.
- ``comparison`` / ``planning``: one setting against the baseline (primary test, verdict,
  simultaneous interval, new-images interval), and planning from sigma.
- ``spending`` / ``sequential_levels`` / ``sequential`` / ``sequential_plan``: sequential
  studies: Lan-DeMets error spending, per-look levels calibrated for estimated variance,
  ``decide`` after each wave (different / equivalent / open; repeated confidence intervals),
  and ``plan_sequential`` (error rates, power and average seeds against the fixed design).
- ``analysis``: ``analyze(runs)`` -> ``results.Analysis`` (the one code path of ``sparse-rcnn
  analyze`` and the study report); ``render``: its JSON, conclusions and Markdown.

Nothing here reads tracking data or configuration; every statistic is checked by simulation in
``tests/platform/stats/test_calibration.py`` (sequential ones in ``test_sequential.py``).
"""
