"""The default console drops Ray's known noise lines, whole lines only, and keeps the rest."""

from __future__ import annotations

import io
import sys

from sparse_rcnn.platform.engine.loop import epoch_line
from sparse_rcnn.platform.orchestration.console import LineFilter, quiet_console

REPORT = (
    "(RayTrainWorker pid=1) Reporting training result 3: TrainingReport(checkpoint=None, "
    "metrics={'epoch': 2}) from rank 0"
)
PREEMPTION = (
    "(TrainController pid=2) [2026-11-29 15:28:04,899 E 2 3] core_worker.cc:2465: Actor with "
    "class name: 'PreemptionWatcher' and ID: 'ab' has constructor arguments in the object store "
    "and max_restarts > 0"
)


def test_noise_lines_are_dropped_even_when_written_in_pieces():
    target = io.StringIO()
    f = LineFilter(target)
    f.write("(RayTrainWorker pid=1) epoch 1/3: iteration 4")
    f.write(", last loss 2.000\n" + REPORT[:20])
    f.write(REPORT[20:] + "\n" + PREEMPTION + "\nwarning: kept\n")
    f.close_partial()
    assert target.getvalue() == (
        "(RayTrainWorker pid=1) epoch 1/3: iteration 4, last loss 2.000\nwarning: kept\n"
    )


def test_quiet_console_restores_the_streams_and_verbose_changes_nothing(capsys):
    with quiet_console():
        print(REPORT)
        print("kept", file=sys.stderr)
    with quiet_console(verbose=True):
        print(REPORT)
    captured = capsys.readouterr()
    assert captured.err == "kept\n"
    assert captured.out == REPORT + "\n"


def test_epoch_line_shows_ap_only_when_the_epoch_evaluated():
    metrics = {"AP": 0.61, "AP50": 4.33}  # AP points, as the engine's evaluation gives them
    assert epoch_line(8, 24, 96, 1.5, metrics) == (
        "epoch 8/24: iteration 96, last loss 1.500, val AP 0.61 AP50 4.33"
    )
    assert epoch_line(8, 24, 96, 1.5, {"APs": 1.0}) == (
        "epoch 8/24: iteration 96, last loss 1.500, val AP n/a"
    )
    assert epoch_line(9, 24, 108, 1.4, None) == "epoch 9/24: iteration 108, last loss 1.400"


def test_tune_banner_and_raylet_worker_warning_are_dropped():
    # Lines measured in `make demo`'s output on Ray 2.60.
    lines = [
        "╭────────────────────────────────────────────────────────╮",
        "│ Configuration for experiment     tune                  │",
        "├────────────────────────────────────────────────────────┤",
        "╰────────────────────────────────────────────────────────╯",
        "View detailed results here: /work/.sparse_rcnn/studies/x/tune",
        "To visualize your results with TensorBoard, run: `tensorboard --logdir /tmp/ray/x`",
        "\x1b[33m(raylet)\x1b[0m WARNING: 8 PYTHON worker processes have been started on node: "
        "85fd with address: 127.0.0.1, which is 4x the maximum expected startup concurrency (2).",
        "[tiny-lr-1] 0/8 done, 1 running, 7 pending | 0:00 elapsed | started s0-all-r1",
    ]
    target = io.StringIO()
    f = LineFilter(target)
    f.write("\n".join(lines) + "\n")
    assert target.getvalue() == lines[-1] + "\n"
