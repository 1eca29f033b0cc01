"""Statistics for seed-variance studies: pure functions over per-seed metric values (issue 5).

Modules:

- ``summary``: one setting over seeds (``summarize``): mean, t-interval, chi-square CI for
  sigma, BCa bootstrap interval, IQM; NaN values (failed trials) are excluded with a warning.
- ``compare``: two settings (``compare``): Welch difference of means, exact Mann-Whitney p,
  P(A > B) with a bootstrap CI, Hedges' g; ``holm`` and ``compare_to_baseline`` for several.
- ``power``: seeds per arm for a two-sided two-sample t test via the non-central t
  (``seeds_per_arm``, ``power_two_sample``, ``minimum_detectable_effect``).
- ``components``: one-source-at-a-time variance components (``decompose``) and test-set
  bootstrap noise beside seed noise (``noise_ratio``).

Everything takes plain sequences of floats and returns frozen dataclasses or numbers; nothing
reads files, tracking data or configuration. Nothing is re-exported here.
"""
