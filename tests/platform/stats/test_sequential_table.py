"""``sparse-rcnn analyze`` on a table with a ``wave`` column: the sequential section of the JSON,
the conclusions and Markdown, the same verdicts as ``decide`` wave by wave, the fixed test for
a single wave, and one line for every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sparse_rcnn.platform.cli.main import main
from sparse_rcnn.platform.stats import compare as cmp
from sparse_rcnn.platform.stats.sequential import SequentialDesign, decide, wave_schedule

SCHEDULE = wave_schedule(3, 2, 20)
SEQUENTIAL_KEYS = set(
    "spending futility max_seeds max_seeds_source alpha schedule comparisons notes".split()
)
COMPARISON_KEYS = set(
    "a b design verdict stopped_wave final looks diff rci rci_equivalence seeds_used max_seeds "
    "sigma plan text".split()
)
LOOK_KEYS = set(
    "wave n_a n_b information alpha_spent diff se df statistic boundary level "
    "equivalence_boundary rci rci_equivalence crossed".split()
)
PLAN_KEYS = set(
    "power expected_seeds_null expected_seeds_effect fixed_seeds saving_effect schedule".split()
)


def wave_of(r: int, schedule=SCHEDULE) -> int:
    return next(k for k, n in enumerate(schedule, start=1) if r < n)


def study_table(
    path, effects: dict[str, float], stops: dict[str, int], seed=0, paired=True, schedule=SCHEDULE
):
    """Rows of a sequential study: replicate r in wave_of(r); a setting has runs up to its stop."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(0, 0.3, 20)  # replicate effects common to every setting (paired)
    lines = ["setting,seed,replicate,wave,value" if paired else "setting,seed,wave,value"]
    values: dict[str, np.ndarray] = {}
    for s, mu in effects.items():
        own = shared if paired else rng.normal(0, 0.3, 20)
        values[s] = 40 + mu + own + 0.1 * rng.standard_normal(20)
        for r in range(stops[s]):
            rep = f"{r}," if paired else ""
            lines.append(f"{s},{r},{rep}{wave_of(r, schedule)},{values[s][r]}")
    path.write_text("\n".join(lines) + "\n")
    return values


def run_cli(capsys, *args):
    code = main(["analyze", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_wave_column_adds_the_sequential_analysis(tmp_path, capsys):
    csv = tmp_path / "waves.csv"
    effects = {"base": 0.0, "big": 0.6, "same": 0.0}
    values = study_table(csv, effects, {"base": 20, "big": 9, "same": 20})
    out_json, out_md = tmp_path / "a.json", tmp_path / "a.md"
    code, out, err = run_cli(capsys, csv, "--max-seeds", 20, "--json-out", out_json,
                             "--md-out", out_md)  # fmt: skip
    assert code == 0, err
    j = json.loads(out_json.read_text())
    seq = j["sequential"]
    assert SEQUENTIAL_KEYS <= set(seq) and seq["max_seeds"] == 20
    assert seq["alpha"] == pytest.approx(0.025) and seq["schedule"] == list(SCHEDULE)
    big, same = seq["comparisons"]
    for c in (big, same):
        assert COMPARISON_KEYS <= set(c) and all(LOOK_KEYS <= set(lk) for lk in c["looks"])
        assert PLAN_KEYS <= set(c["plan"]) and c["text"] in out
    assert (big["a"], big["b"], big["design"]) == ("big", "base", "paired")
    assert big["verdict"] == "different" and big["looks"][-1]["crossed"] == "different"
    assert big["stopped_wave"] == len(big["looks"]) and big["rci"][0] > 0
    assert same["verdict"] in ("equivalent", "undecided")
    # The same verdicts as the driver's calls after each wave.
    design = SequentialDesign(20, 0.3, 0.025)
    d = values["big"] - values["base"]
    for k in range(1, len(SCHEDULE) + 1):
        r = decide([d[a:b] for a, b in zip((0, *SCHEDULE), SCHEDULE[:k], strict=False)],
                   design=design)  # fmt: skip
        if r.verdict != "open":
            break
    assert (r.verdict, r.stopped_wave, r.seeds_used) == (
        big["verdict"], big["stopped_wave"], big["seeds_used"],
    )  # fmt: skip
    assert r.rci.low == pytest.approx(big["rci"][0])
    assert "Sequential analysis, wave by wave (O'Brien-Fleming-type" in out
    assert "the sequential verdicts account for stopping after each wave" in out
    md = out_md.read_text()
    assert "## Sequential analysis (wave by wave)" in md and "| wave | seeds A / B |" in md
    assert {r["wave"] for r in j["runs"]} == set(range(1, len(SCHEDULE) + 1))


def test_without_waves_the_section_is_null(tmp_path, capsys):
    csv = tmp_path / "t.csv"
    csv.write_text("setting,seed,value\na,0,1\na,1,2\na,2,2.5\nb,0,1\nb,1,2.2\nb,2,2.4\n")
    code, out, err = run_cli(capsys, csv, "--json-out", tmp_path / "o.json")
    assert code == 0, err
    assert json.loads((tmp_path / "o.json").read_text())["sequential"] is None
    assert "Sequential" not in out


def test_one_wave_gives_the_fixed_verdict(tmp_path, capsys):
    csv = tmp_path / "one.csv"
    stops = {"base": 8, "x": 8}
    values = study_table(csv, {"base": 0.0, "x": 0.25}, stops, seed=3, schedule=(8,))
    code, out, err = run_cli(capsys, csv, "--json-out", tmp_path / "o.json")
    assert code == 0, err
    j = json.loads((tmp_path / "o.json").read_text())
    (c,) = j["sequential"]["comparisons"]
    (fixed,) = j["comparisons"]
    assert c["final"] and c["seeds_used"] == 8 and c["verdict"] == fixed["verdict"]
    ref = cmp.paired_t(values["x"][:8] - values["base"][:8], 0.95)
    assert c["rci"] == pytest.approx([ref.ci.low, ref.ci.high])
    assert c["rci"] == pytest.approx(fixed["ci"])


def test_unpaired_waves_use_welch(tmp_path, capsys):
    csv = tmp_path / "u.csv"
    study_table(csv, {"base": 0.0, "x": 1.5}, {"base": 20, "x": 20}, seed=5, paired=False)
    code, out, err = run_cli(capsys, csv, "--json-out", tmp_path / "o.json", "--spending",
                             "pocock", "--futility")  # fmt: skip
    assert code == 0, err
    seq = json.loads((tmp_path / "o.json").read_text())["sequential"]
    (c,) = seq["comparisons"]
    assert c["design"] == "unpaired" and c["verdict"] == "different"
    assert seq["spending"] == "pocock" and seq["futility"] is True
    assert seq["max_seeds_source"] == "table" and seq["notes"]
    assert "Pocock-type alpha spending" in out


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ("setting,seed,wave,value\na,0,1,1\na,1,,2\nb,0,1,1\nb,1,1,2\n", [],
         "column 'wave', row 2: empty value"),
        ("setting,seed,wave,value\na,0,0,1\na,1,1,2\nb,0,1,1\nb,1,1,2\n", [],
         "row 1: wave 0: waves count from 1"),
        ("setting,seed,wave,value\na,0,1,1\na,1,x,2\nb,0,1,1\nb,1,1,2\n", [],
         "column 'wave', row 2: 'x' is not an integer"),
        ("setting,seed,wave,value\na,0,1,1\na,1,1,2\na,2,2,3\nb,0,1,1\nb,1,1,2\n",
         ["--max-seeds", "2"], "--max-seeds 2 is below the 3 runs a setting has"),
        ("setting,seed,value\na,0,1\na,1,2\nb,0,1\nb,1,2\n", ["--max-seeds", "9"],
         "max seeds, spending and futility need a wave column"),
        ("setting,seed,value\na,0,1\na,1,2\nb,0,1\nb,1,2\n", ["--futility"],
         "max seeds, spending and futility need a wave column"),
        ("setting,seed,source,wave,value\na,0,all,1,1\na,1,init,1,2\na,2,all,1,2\nb,0,all,1,1\n"
         "b,1,all,1,2\n", [], "a wave column needs every run in source all"),
    ],
)  # fmt: skip
def test_bad_wave_tables_get_one_line(tmp_path, capsys, content, args, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    code, _, err = run_cli(capsys, path, *args)
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
