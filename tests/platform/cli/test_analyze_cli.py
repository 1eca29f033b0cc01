"""``sparse-rcnn analyze``: tables in, conclusions and the documented JSON out; one line for
every bad table; the same numbers as the study report for the same runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from sparse_rcnn.dashboards.report_text import report_json
from sparse_rcnn.platform.cli.main import main
from sparse_rcnn.platform.orchestration.study_report import study_analysis

JSON_KEYS = {"alpha", "confidence", "effect_size", "settings", "comparisons", "components", "power"}
SETTING_KEYS = {"setting", "n", "mean", "std", "std_ci", "mean_ci"}
COMPARISON_KEYS = {
    "a", "b", "diff", "ci", "ci_simultaneous", "p_welch", "p_adjusted", "p_mann_whitney",
    "p_superiority", "p_superiority_ci", "hedges_g", "verdict",
}  # fmt: skip
POWER_KEYS = {"sigma", "sigma_ci", "seeds_per_arm_80", "seeds_per_arm_90", "mde_80"}


def write_csv(path, rows, header="setting,seed,value"):
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


def run_cli(capsys, *args):
    code = main(["analyze", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_csv_to_conclusions_and_documented_json(tmp_path, capsys):
    a = [0.301, 0.305, 0.298, 0.303]
    b = [0.306, 0.309, 0.304, 0.311]
    rows = [("lr=1", i, v) for i, v in enumerate(a)] + [("lr=2", i, v) for i, v in enumerate(b)]
    csv = write_csv(tmp_path / "t.csv", rows)
    out_json, out_md = tmp_path / "a.json", tmp_path / "a.md"
    code, out, err = run_cli(
        capsys, csv, "--scale", "100", "--json-out", out_json, "--md-out", out_md, "--unpaired"
    )
    assert code == 0, err
    assert "lr=2 vs lr=1: +" in out and "distinguishable from seed noise at alpha 0.05" in out
    j = json.loads(out_json.read_text())
    assert JSON_KEYS <= set(j) and j["alpha"] == 0.05 and j["confidence"] == 0.95
    assert all(SETTING_KEYS <= set(s) for s in j["settings"])
    (c,) = j["comparisons"]
    assert COMPARISON_KEYS <= set(c) and POWER_KEYS <= set(j["power"])
    assert (c["a"], c["b"]) == ("lr=2", "lr=1")
    ref = stats.ttest_ind(100 * np.array(b), 100 * np.array(a), equal_var=False)
    assert c["diff"] == pytest.approx(100 * (np.mean(b) - np.mean(a)))
    assert c["p_welch"] == pytest.approx(ref.pvalue)
    assert c["ci"] == pytest.approx(list(ref.confidence_interval(0.95)))
    assert c["verdict"] in ("different", "equivalent", "undecided")
    assert out_md.read_text().startswith("# Analysis of t.csv")


def test_parquet_with_metric_source_replicate_and_baseline(tmp_path, capsys):
    rng = np.random.default_rng(0)
    settings, seeds, vals, reps = [], [], [], []
    for s, mu in (("x", 40.0), ("y", 40.4), ("z", 40.1)):
        for r in range(5):
            settings.append(s), seeds.append(r), reps.append(r)
            vals.append(mu + 0.1 * rng.standard_normal())
    path = tmp_path / "t.parquet"
    pq.write_table(
        pa.table({"setting": settings, "seed": seeds, "AP": vals, "replicate": reps}), path
    )
    out_json = tmp_path / "o.json"
    code, out, err = run_cli(capsys, path, "--metric", "AP", "--baseline", "y", "--json-out",
                             out_json, "--alpha", "0.1")  # fmt: skip
    assert code == 0, err
    j = json.loads(out_json.read_text())
    assert j["pairing"] == "paired" and j["baseline"] == "y"
    assert [(c["a"], c["b"]) for c in j["comparisons"]] == [("x", "y"), ("z", "y")]
    # alpha 0.1: 90% intervals; with 2 comparisons the simultaneous level is 1 - 0.1/2 = 95%
    assert "95% simultaneous CI" in out and "90% CI" in out and "97.5%" not in out
    assert all(
        v is None or math.isfinite(v) for v in j["power"].values() if not isinstance(v, (list, str))
    )


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ("setting,seed\na,0\n", [], "missing column(s) value (use --metric"),
        ("setting,seed,value\na,0,hi\na,1,2\nb,0,1\nb,1,2\n", [],
         "column 'value', row 1: 'hi' is not a number"),
        ("setting,seed,value\na,0,1\na,1,2\nb,0,1\n", [],
         "setting 'b' has 1 finished run(s); each setting needs at least 2"),
        ("setting,seed,value\na,0,1\na,0,2\nb,0,1\nb,1,2\n", [],
         "rows 1 and 2 repeat setting 'a', seed 0, source 'all'"),
        ("setting,seed,value\na,0.5,1\na,1,2\n", [],
         "column 'seed', row 1: '0.5' is not an integer"),
        ("setting,seed,value,source\na,0,1,weird\na,1,2,all\n", [],
         "row 1: source 'weird' is not one of all, init"),
        ("setting,seed,value\na,0,1\na,1,2\nb,0,1\nb,1,2\n", ["--baseline", "q"],
         "baseline 'q' is not a setting"),
        ("setting,seed,value\na,0,1\na,1,2\n", ["--alpha", "2"], "--alpha must be between 0 and 1"),
        ("setting,seed,value\na,0,1\na,1,2\n", ["--effect-size", "-1"],
         "--effect-size must be a positive number"),
        ("setting,seed,value\na,0,inf\na,1,2\n", [], "'inf' is not a finite number"),
    ],
)  # fmt: skip
def test_bad_tables_get_one_line_and_exit_2(tmp_path, capsys, content, args, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    code, out, err = run_cli(capsys, path, *args)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_missing_file_wrong_suffix_and_unwritable_output(tmp_path, capsys):
    code, _, err = run_cli(capsys, tmp_path / "nope.csv")
    assert code == 2 and "nope.csv: no such file" in err
    txt = tmp_path / "t.txt"
    txt.write_text("x")
    code, _, err = run_cli(capsys, txt)
    assert code == 2 and "expected a .csv or .parquet file" in err
    good = write_csv(tmp_path / "g.csv", [("a", 0, 1), ("a", 1, 2)])
    code, _, err = run_cli(capsys, good, "--json-out", tmp_path)
    assert code == 2 and "is a directory" in err
    code, _, err = run_cli(capsys, good, "--md-out", tmp_path / "no" / "x.md")
    assert code == 2 and "does not exist" in err


def test_study_report_and_analyze_give_the_same_numbers(tmp_path, capsys):
    rng = np.random.default_rng(8)
    rows, csv_rows = [], []
    for i, (label, mu) in enumerate((("lr=0.002", 30.0), ("lr=0.005", 30.3))):
        for r in range(4):  # results.parquet rows hold AP points
            v = mu + 0.2 * rng.standard_normal()
            rows.append({"trial_key": f"s{i}-all-r{r}", "setting": i, "setting_label": label,
                         "source": "all", "replicate": r, "seed": r, "status": "ok",
                         "error": None, "AP": v})  # fmt: skip
            csv_rows.append((label, r, v, r))
    report = report_json(
        study_analysis(rows, metric="AP", effect_size=0.3, alpha=0.05, pairing="replicate"),
        rows,
        "sid",
    )
    csv = write_csv(tmp_path / "r.csv", csv_rows, "setting,seed,AP,replicate")
    out_json = tmp_path / "r.json"
    code, _, err = run_cli(capsys, csv, "--metric", "AP", "--json-out", out_json)
    assert code == 0, err
    j = json.loads(out_json.read_text())
    for mine, theirs in zip(j["settings"], report["settings"], strict=True):
        for key in SETTING_KEYS:
            assert mine[key] == pytest.approx(theirs[key]), key
    for mine, theirs in zip(j["comparisons"], report["comparisons"], strict=True):
        for key in COMPARISON_KEYS | {"p", "p_wilcoxon", "p_equivalence", "design"}:
            assert mine[key] == pytest.approx(theirs[key]), key
    for key in POWER_KEYS:
        assert j["power"][key] == pytest.approx(report["power"][key]), key
    assert j["comparisons"][0]["design"] == "paired"
