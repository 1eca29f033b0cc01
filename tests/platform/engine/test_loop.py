from __future__ import annotations

import pytest
import torch

from sparse_rcnn.platform.engine.local_reporter import LocalReporter
from sparse_rcnn.platform.engine.loop import NullLogger, RunRefused, run_training
from sparse_rcnn.platform.engine.train_step import NonFiniteLossError


class RecordingLogger(NullLogger):
    def __init__(self):
        self.steps: list[tuple[int, dict]] = []
        self.epochs: list[tuple[int, dict]] = []

    def log_metrics(self, metrics, step):
        self.steps.append((step, metrics))

    def log_epoch(self, epoch, metrics):
        self.epochs.append((epoch, metrics))


def final_state(folder) -> dict[str, torch.Tensor]:
    return LocalReporter(folder).latest_checkpoint()["model"]


def assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]


@pytest.mark.slow
def test_two_runs_with_the_same_seeds_are_bit_identical(tmp_path, make_spec, small_data):
    spec = make_spec(deterministic=True)
    log_a = RecordingLogger()
    a = run_training(spec, small_data, LocalReporter(tmp_path / "a"), log_a)
    b = run_training(spec, small_data, LocalReporter(tmp_path / "b"), NullLogger())
    assert_identical(final_state(tmp_path / "a"), final_state(tmp_path / "b"))
    assert a.metrics == b.metrics and set(a.metrics) >= {"AP", "AP50", "AR100"}
    assert a.iterations == b.iterations == 2 * 4  # 8 training images, batch 2, 2 epochs
    # lr: warmup from 0.001 x lr over 3 iterations, then x0.1 from epoch 1 (lr_steps [1]).
    lrs = [m["train/lr"] for _, m in log_a.steps]
    assert lrs[0] == pytest.approx(1e-3 * 0.001)
    assert lrs[3] == pytest.approx(1e-3) and lrs[4] == pytest.approx(1e-4)
    assert [e for e, _ in log_a.epochs] == [1, 2]
    c = run_training(make_spec(deterministic=True, **{"seeds.init": 99}), small_data,
                     LocalReporter(tmp_path / "c"))  # fmt: skip
    assert c.iterations == a.iterations
    with pytest.raises(AssertionError):
        assert_identical(final_state(tmp_path / "a"), final_state(tmp_path / "c"))


@pytest.mark.slow
def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, make_spec, small_data,
                                                          monkeypatch):  # fmt: skip
    spec = make_spec(deterministic=True)
    run_training(spec, small_data, LocalReporter(tmp_path / "straight"))
    marker = tmp_path / "failed-once"
    monkeypatch.setenv("SPARSE_RCNN_FAIL_ONCE", f"1:0:{marker}")
    with pytest.raises(RuntimeError, match="injected failure at epoch 1"):
        run_training(spec, small_data, LocalReporter(tmp_path / "crashy"))
    assert marker.exists()
    resumed = run_training(spec, small_data, LocalReporter(tmp_path / "crashy"))
    assert resumed.resumed_from_epoch == 0 and resumed.epochs_done == 1
    assert_identical(final_state(tmp_path / "straight"), final_state(tmp_path / "crashy"))


def test_divergence_stops_with_the_step_and_terms(tmp_path, make_spec, small_data):
    spec = make_spec(**{"optimizer.lr": 1e6, "optimizer.clip_grad_norm": None,
                        "schedule.warmup_iters": 0, "schedule.epochs": 3,
                        "schedule.lr_steps": []})  # fmt: skip
    reporter = LocalReporter(tmp_path / "nan")
    with pytest.raises(NonFiniteLossError, match=r"non-finite (loss|predictions) at step \d+"):
        run_training(spec, small_data, reporter)


def test_an_evaluation_the_spec_makes_impossible_stops_the_run(tmp_path, make_spec, small_data):
    """A spec error raised by the evaluation ends the run with RunRefused (every rank raises it
    after a broadcast; ``train_worker`` returns it as a status, so Ray Train does not restart).
    Load-time validation refuses such a spec; ``model_copy`` gets one past it, as a spec built
    by hand or by an older version would."""
    spec = make_spec(**{"schedule.epochs": 1, "schedule.lr_steps": []})
    spec = spec.model_copy(update={"eval_max_dets": (100, 10, 1)})
    reporter = LocalReporter(tmp_path / "refused")
    with pytest.raises(RunRefused) as info:
        run_training(spec, small_data, reporter)
    assert str(info.value) == (
        "evaluation after epoch 1: max_dets must be three increasing positive ints, "
        "got [100, 10, 1]"
    )
    assert reporter.history == []  # nothing reported as if the epoch had been evaluated


class CrashBeforeCommit(LocalReporter):
    """Raises in ``report`` before keeping epoch ``epoch``'s checkpoint, once: the process
    died after logging that epoch's evaluation but before its checkpoint was committed."""

    def __init__(self, folder, epoch: int):
        super().__init__(folder)
        self.epoch = epoch

    def report(self, metrics, checkpoint):
        if checkpoint is not None and checkpoint["epoch"] == self.epoch:
            raise RuntimeError("crash before the checkpoint was committed")
        super().report(metrics, checkpoint)


@pytest.mark.slow
def test_a_restart_logs_each_epoch_and_iteration_once(tmp_path, make_spec, small_data,
                                                       monkeypatch):  # fmt: skip
    """Evaluate -> log -> crash before the checkpoint -> resume from the previous checkpoint,
    on a real MLflow store: the re-run epoch and its iterations are not logged a second time."""
    from mlflow.tracking import MlflowClient

    from sparse_rcnn.platform.tracking.runs import RunLogger, create_run
    from sparse_rcnn.platform.tracking.studies import eval_history

    monkeypatch.chdir(tmp_path)  # a SQLite store's artifacts go to ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = create_run(uri, "restart", "r", {"a": 1})
    spec = make_spec(deterministic=True, **{"schedule.epochs": 3})
    with pytest.raises(RuntimeError, match="before the checkpoint"):
        run_training(spec, small_data, CrashBeforeCommit(tmp_path / "ck", epoch=1),
                     RunLogger(uri, run_id, write_once=True))  # fmt: skip
    c = MlflowClient(uri)
    assert [m.step for m in c.get_metric_history(run_id, "val/AP")] == [1, 2]  # 2: uncommitted
    resumed = run_training(spec, small_data, LocalReporter(tmp_path / "ck"),
                           RunLogger(uri, run_id, write_once=True))  # fmt: skip
    assert resumed.resumed_from_epoch == 0 and resumed.iterations == 3 * 4

    ap = c.get_metric_history(run_id, "val/AP")
    assert sorted(m.step for m in ap) == [1, 2, 3]
    losses = c.get_metric_history(run_id, "train/loss")  # log_interval 1
    assert sorted(m.step for m in losses) == list(range(1, 13))
    history = eval_history(uri, run_id, ("AP", "AP50"))
    assert [epoch for epoch, _ in history["AP"]] == [1.0, 2.0, 3.0]
    assert [epoch for epoch, _ in history["AP50"]] == [1.0, 2.0, 3.0]
    assert history["AP"][-1][1] == pytest.approx(resumed.metrics["AP"])
