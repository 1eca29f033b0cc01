"""The evaluation in forked parts (``sparse-rcnn eval`` on several CPUs) gives the one-process
result bit for bit: decoded columns, matching, metrics; and pycocotools' metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields

import numpy as np
import pytest

from sparse_rcnn.platform.errors import InputError
from sparse_rcnn.platform.evaluation import detections, forked, matching
from sparse_rcnn.platform.evaluation.coco_eval import MMDET_MAX_DETS, evaluate, prepare, summarize
from sparse_rcnn.platform.evaluation.coco_json import split_results
from sparse_rcnn.platform.evaluation.detections import (
    Detections,
    begin_load_detections,
    load_detections,
)
from sparse_rcnn.platform.evaluation.ground_truth import load_ground_truth
from sparse_rcnn.platform.evaluation.matching import match_detections, match_in_parts

pytestmark = pytest.mark.skipif(not forked.can_fork(), reason="fork is used on Linux only")
TOL = 1e-9


@pytest.fixture
def always_split(monkeypatch):
    """Split whatever the size: the thresholds otherwise keep test-sized inputs whole."""
    monkeypatch.setattr(detections, "SPLIT_MIN_BYTES", 0)
    monkeypatch.setattr(matching, "_SPLIT_MIN_ROWS", 0)


def _same_detections(a: Detections, b: Detections) -> None:
    for name in ("image_id", "category_id", "score", "bbox"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("shares", [[0.5, 0.5], [0.0, 1.0], [0.2, 0.3, 0.5], [0.1] * 10])
def test_ranges_cut_between_detections_and_cover_the_list(shares):
    results = [
        {"image_id": i, "category_id": 1, "score": 0.5, "bbox": [1, 2, 3, 4]} for i in range(50)
    ]
    text = json.dumps(results, indent=1).encode()
    ranges = split_results(text, shares)
    assert 1 <= len(ranges) <= len(shares)
    assert ranges[0][0] == text.index(b"[") + 1 and ranges[-1][1] == text.rindex(b"]")
    pieces = [json.loads(b"[" + text[a:b] + b"]") for a, b in ranges]
    assert all(pieces) and sum(pieces, []) == results
    assert split_results(b'{"a": 1}', shares) == []  # not a list


@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("indent", [None, 2])
def test_a_file_decoded_in_parts_equals_one_process(
    tmp_path, make_case, always_split, workers, indent
):
    _, results = make_case(0)
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(results, indent=indent))
    with begin_load_detections(path, workers, other_work_bytes=100) as pending:
        assert len(pending._children) == workers - 1  # really split
        got = pending.result()
    _same_detections(got, load_detections(path))
    _same_detections(load_detections(path, workers), load_detections(path))


@pytest.mark.parametrize(
    "tail",
    [
        b', {"image_id": 1, "category_id": 1, "score": "high", "bbox": [1, 2, 3, 4]}]',  # a string
        b', {"image_id": 1, "category_id": 1, "score": 0.5, "bbox": [1, 2, 3]}]',  # 3 numbers
        b", ]",  # a trailing comma: not JSON
        b', {"image_id": 2.0, "category_id": 1, "score": 0.5, "bbox": [1, 2, 3, 4]}]',  # 2.0 is 2
        b', {"image_id": 1, "category_id": 1, "score": 0.5, "bbox": [1, 2, 3, 4], "n": "},{"}]',
    ],
)
def test_a_part_the_decoder_refuses_is_decided_by_the_one_process_reader(
    tmp_path, make_case, always_split, tail
):
    _, results = make_case(1)
    path = tmp_path / "dets.json"
    path.write_bytes(json.dumps(results).encode()[:-1] + tail)  # the odd entry in the last part

    def outcome(workers: int):
        try:
            return load_detections(path, workers)
        except InputError as e:
            return str(e)

    one, parts = outcome(1), outcome(2)
    if isinstance(one, str):
        assert parts == one  # the same message
    else:
        _same_detections(parts, one)


@pytest.mark.parametrize("workers", [2, 3, 7])
@pytest.mark.parametrize("ties", [False, True])
def test_matching_in_parts_equals_one_process(make_case, always_split, workers, ties):
    gt, results = make_case(2, tie_scores=ties)
    gt = load_ground_truth(gt)
    dets = Detections.from_coco_results(results)
    one, parts = match_detections(gt, dets, 100), match_detections(gt, dets, 100, workers)
    for f in fields(one):
        a, b = getattr(one, f.name), getattr(parts, f.name)
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b, err_msg=f.name)
    assert one.dropped == parts.dropped > 0  # the case has detections on an unlisted category
    split = match_in_parts(gt, dets, 100, workers, lambda m: len(m.rank))
    assert 2 <= len(split.ranges) <= workers and sum(split.results) == len(one.rank)


@pytest.mark.parametrize("max_dets", [None, MMDET_MAX_DETS])
@pytest.mark.parametrize("seed", [3, 4])
def test_metrics_in_parts_equal_one_process_and_pycocotools(
    make_case, pycoco, always_split, max_dets, seed
):
    gt, results = make_case(seed, tie_scores=seed == 4)
    dets = Detections.from_coco_results(results)
    md = {} if max_dets is None else {"max_dets": max_dets}
    one, parts = evaluate(gt, dets, **md), evaluate(gt, dets, workers=2, **md)
    assert _nan_equal(parts, one)  # bit for bit, NaN per-category AP included
    np.testing.assert_allclose(parts.stats_array(), pycoco(gt, results, max_dets), rtol=0, atol=TOL)
    # The accumulator path (bootstrap) from a matching in parts: the same plain metrics.
    assert _nan_equal(summarize(prepare(gt, dets, workers=2, **md)[1]), one)


def _nan_equal(a, b) -> bool:
    same = {k: v for k, v in vars(a).items() if k != "per_category_ap"} == {
        k: v for k, v in vars(b).items() if k != "per_category_ap"
    }
    pa, pb = a.per_category_ap, b.per_category_ap
    return (
        same
        and pa.keys() == pb.keys()
        and all((np.isnan(pa[k]) and np.isnan(pb[k])) or pa[k] == pb[k] for k in pa)
    )


def test_input_errors_are_raised_before_any_fork(make_case, always_split):
    gt, results = make_case(0)
    results[-1]["image_id"] = 10**6  # an image the ground truth does not list
    with pytest.raises(InputError, match="image ids that the ground truth does not list"):
        evaluate(gt, Detections.from_coco_results(results), workers=2)


def test_the_eval_command_splits_a_large_file_and_prints_the_one_process_metrics(
    tmp_path, make_case
):
    """The real command on a results file above the split threshold, run on one CPU (one
    process) and on two (forked parts), writes the same metrics."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        if os.environ.get("CI"):  # in CI a skip would hide the check
            pytest.fail("this machine has one CPU: the command would not split")
        pytest.skip(reason="this machine has one CPU: the command would not split")
    gt, results = make_case(5, n_images=1200)
    while len(json.dumps(results)) < detections.SPLIT_MIN_BYTES:
        results = results + results
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dets.json").write_text(json.dumps(results))
    out = []
    for allowed in (cpus[:1], cpus[:2]):
        json_out = tmp_path / f"out-{len(allowed)}.json"
        subprocess.run(
            ["taskset", "-c", ",".join(map(str, allowed)), sys.executable, "-m",
             "sparse_rcnn.platform.cli.main", "eval", "--gt", str(tmp_path / "gt.json"),
             "--detections", str(tmp_path / "dets.json"), "--json-out", str(json_out)],
            check=True, capture_output=True,
        )  # fmt: skip
        out.append(json.loads(json_out.read_text()))
    assert out[0] == out[1]
