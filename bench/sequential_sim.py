"""Sequential seed studies (issue 14): simulated error rates, power and seeds used.

    .venv/bin/python -m bench.sequential_sim [--sims 20000]

The issue's design: waves of 3, then 2 more seeds per setting up to 20 (looks after 3, 5, ...,
19, 20), effect of interest 0.3 (AP points), alpha 0.05 for one comparison. Seed effects are
normal; ``sigma`` is the std of the per-replicate differences (paired) or of one setting's runs
(Welch). For each design and sigma, ``sims`` studies at a true difference of 0 and as many at
+0.3 (``stats.sequential_plan.simulate``, fixed RNG seeds), and the fixed design that has the
same power (``stats.power.seeds_per_arm``, exact non-central t). Prints Markdown tables;
results go in BENCHMARKS.md. MC SE of a rate p is sqrt(p (1 - p) / sims).
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import numpy as np
import scipy
from scipy import stats

from sparse_rcnn.platform.stats.power import seeds_per_arm
from sparse_rcnn.platform.stats.sequential import (
    SequentialDesign,
    first_stop,
    look_crossings,
    wave_schedule,
)
from sparse_rcnn.platform.stats.sequential_levels import Levels, fractions_for
from sparse_rcnn.platform.stats.sequential_plan import simulate
from sparse_rcnn.platform.stats.spending import Spending, z_boundaries

EFFECT, ALPHA, MAX = 0.3, 0.05, 20
SCHEDULE = wave_schedule(3, 2, MAX)


def pct(p: float, sims: int) -> str:
    return f"{100 * p:.2f} ± {100 * math.sqrt(p * (1 - p) / sims):.2f}"


def paired_rows(sims: int) -> list[str]:
    rows = []
    for name in ("obrien_fleming", "pocock"):
        for futility in (False, True):
            design = SequentialDesign(MAX, EFFECT, ALPHA, Spending(name), futility)
            for sigma in (0.2, 0.3, 0.45, 1.0):
                rng = np.random.default_rng(1000 + int(100 * sigma))
                null = simulate(design, SCHEDULE, 0.0, sigma, sims, rng)
                alt = simulate(design, SCHEDULE, EFFECT, sigma, sims, rng)
                neg = simulate(design, SCHEDULE, -EFFECT, sigma, sims, rng)
                power = alt.rate("different")
                eq_err = max(alt.rate("equivalent"), neg.rate("equivalent"))
                fixed = seeds_per_arm(EFFECT, sigma, min(power, 1 - 1 / sims), ALPHA, paired=True)
                rows.append(
                    f"| {name} | {'on' if futility else 'off'} | {sigma:g} | "
                    f"{pct(null.rate('different'), sims)} | {100 * null.rate('equivalent'):.1f} | "
                    f"{pct(power, sims)} | {pct(eq_err, sims)} | {null.mean_seeds:.2f} | "
                    f"{alt.mean_seeds:.2f} | {fixed} | "
                    f"{100 * (1 - null.mean_seeds / fixed):.0f} % | "
                    f"{100 * (1 - alt.mean_seeds / fixed):.0f} % |"
                )
    return rows


def welch_rows(sims: int) -> list[str]:
    rows = []
    design = SequentialDesign(MAX, EFFECT, ALPHA)
    for ratio in (1.0, 4.0, 100.0):
        rng = np.random.default_rng(2000 + int(ratio))
        null = simulate(design, SCHEDULE, 0.0, 1.0, sims, rng, paired=False,
                        sigma_b=math.sqrt(ratio))  # fmt: skip
        rows.append(
            f"| Welch, sigma 1, variance ratio {ratio:g} | {pct(null.rate('different'), sims)} |"
        )
    sigma = 0.3
    rng = np.random.default_rng(2999)
    alt = simulate(design, SCHEDULE, EFFECT, sigma, sims, rng, paired=False)
    power = alt.rate("different")
    fixed = seeds_per_arm(EFFECT, sigma, power, ALPHA)
    rows.append(
        f"| Welch, sigma 0.3 per setting: power {pct(power, sims)}, seeds {alt.mean_seeds:.2f} "
        f"vs fixed {fixed} ({100 * (1 - alt.mean_seeds / fixed):.0f} % fewer) | |"
    )
    return rows


def coverage_rows(sims: int) -> list[str]:
    """Coverage of the repeated (1 - alpha) interval at the look where the study stopped."""
    rows = []
    for name in ("obrien_fleming", "pocock"):
        design = SequentialDesign(MAX, EFFECT, ALPHA, Spending(name))
        for true in (0.0, EFFECT):
            rng = np.random.default_rng(4000 + int(10 * true))
            sim = simulate(design, SCHEDULE, true, 0.45, sims, rng)
            hit = float(np.mean((sim.rci_low <= true) & (true <= sim.rci_high)))
            rows.append(f"| {name}, sigma_d 0.45, true difference {true:g} | {pct(hit, sims)} |")
    return rows


def z_converted_rows(sims: int) -> list[str]:
    """The rejected alternative: z boundaries turned into t quantiles (same nominal p)."""
    rows = []
    for name in ("obrien_fleming", "pocock"):
        for schedule in (SCHEDULE, (2, 3, 4, 5, 6)):
            sp = Spending(name)
            frac = fractions_for(schedule, None, schedule[-1], True)
            two = 2 * stats.norm.sf(z_boundaries(frac, ALPHA, sp))
            one = stats.norm.sf(z_boundaries(frac, ALPHA, sp, sides=1))
            lv = Levels(frac, np.cumsum(sp.increments(frac, ALPHA)), two, one)
            n = np.array(schedule)
            d = np.random.default_rng(3000).standard_normal((sims, schedule[-1]))
            s1, s2 = np.cumsum(d, 1)[:, n - 1], np.cumsum(d * d, 1)[:, n - 1]
            mean = s1 / n
            se = np.sqrt((s2 - n * mean**2) / (n - 1) / n)
            df = np.broadcast_to(n - 1.0, mean.shape)
            diff, eq, _, _ = look_crossings(mean, se, df, lv, 1e-9)
            code, _ = first_stop(diff, eq, np.zeros_like(diff), True)
            rate = float(np.mean(code == 0))
            rows.append(f"| z converted to t, {name}, looks {list(schedule)} | {pct(rate, sims)} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sims", type=int, default=20_000)
    sims = ap.parse_args().sims
    start = time.perf_counter()
    print(f"Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}")
    print(f"looks after {list(SCHEDULE)} seeds; effect {EFFECT}; alpha {ALPHA}; {sims} studies\n")
    print(
        "| spending | futility | sigma_d | P(different) at 0, % | P(equivalent) at 0, % | "
        "power at 0.3, % | P(equivalent) at ±0.3, % | seeds at 0 | seeds at 0.3 | "
        "fixed n, same power | saving at 0 | saving at 0.3 |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(paired_rows(sims)))
    print("\n| unpaired (Welch), OBF | P(different) at 0, % |\n|---|---:|")
    print("\n".join(welch_rows(sims)))
    print("\n| repeated 95 % CI at the stopping look | coverage, % |\n|---|---:|")
    print("\n".join(coverage_rows(sims)))
    print("\n| rejected method (paired t, type-I error) | P(different) at 0, % |\n|---|---:|")
    print("\n".join(z_converted_rows(sims)))
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
