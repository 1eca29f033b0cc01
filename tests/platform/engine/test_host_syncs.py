"""Host synchronisations per training step, counted on CPU.

On a GPU every read of a device value into Python (``.item()``, ``float()``, ``int()``,
``bool()``, ``.tolist()``) and every ``.cpu()`` copy waits for the GPU's queue to drain. The test
wraps those methods of ``torch.Tensor`` and counts the calls made inside each step of a real
:func:`run_training` (from the step's start to the next batch's fetch: the data pipeline's
host-side reads of its own CPU tensors are not counted). AdamW's ``step`` counters are left out
by identity: torch.optim keeps them on the CPU (unless ``capturable``/``fused``), so reading
them is no device sync.
"""

from __future__ import annotations

import collections

import pytest
import torch

from sparse_rcnn.platform.engine import faults, loop
from sparse_rcnn.platform.engine.local_reporter import LocalReporter

READS = ("item", "__float__", "__int__", "__index__", "__bool__", "tolist")
COPIES = ("cpu",)


class Counter:
    def __init__(self):
        self.active = False
        self.current: collections.Counter[str] = collections.Counter()
        self.windows: list[collections.Counter[str]] = []
        self.optimizers: list[torch.optim.Optimizer] = []
        self.step_counters: set[int] = set()  # ids of AdamW's state["step"] tensors

    def excluded(self, tensor: torch.Tensor) -> bool:
        if id(tensor) not in self.step_counters:  # AdamW creates its state in the first step
            states = [s for o in self.optimizers for s in o.state.values()]
            self.step_counters = {id(s["step"]) for s in states if "step" in s}
        return id(tensor) in self.step_counters

    def start_step(self) -> None:
        self.active = True
        self.current = collections.Counter()
        self.windows.append(self.current)


def install(monkeypatch, counter: Counter) -> None:
    for name in READS + COPIES:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            if counter.active and not counter.excluded(self):
                counter.current["copies" if _name in COPIES else "reads"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)

    monkeypatch.setattr(faults, "maybe_fail", lambda epoch, iteration: counter.start_step())

    real_loader = loop.build_train_loader

    class PausingLoader:
        """The train loader; counting pauses while it produces a batch."""

        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __iter__(self):
            it = iter(self.inner)
            while True:
                counter.active = False
                try:
                    batch = next(it)
                except StopIteration:
                    return
                yield batch

    def build_loader(*args, **kwargs):
        return PausingLoader(real_loader(*args, **kwargs))

    monkeypatch.setattr(loop, "build_train_loader", build_loader)

    class RecordedAdamW(torch.optim.AdamW):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            counter.optimizers.append(self)

    monkeypatch.setattr(torch.optim, "AdamW", RecordedAdamW)


class ValueLogger(loop.NullLogger):
    def __init__(self):
        self.steps: dict[int, dict[str, float]] = {}

    def log_metrics(self, metrics, step):
        self.steps[step] = metrics


def test_a_step_reads_the_device_once_and_a_logging_step_twice(
    tmp_path, make_spec, small_data, monkeypatch
):
    log_interval = 3
    spec = make_spec(**{"schedule.epochs": 1, "schedule.lr_steps": [], "eval_interval": 0,
                        "batch_size_per_worker": 1,
                        "mlflow.log_interval": log_interval})  # fmt: skip
    counter = Counter()
    install(monkeypatch, counter)
    # Every step's values, read by the test (not counted) to compare with what is logged.
    real_step, stepped = loop.train_step, []

    def recording_step(*args, **kwargs):
        result = real_step(*args, **kwargs)
        active, counter.active = counter.active, False
        stepped.append(result.read())
        counter.active = active
        return result

    monkeypatch.setattr(loop, "train_step", recording_step)
    logger = ValueLogger()
    loop.run_training(spec, small_data, LocalReporter(tmp_path / "ck"), logger)

    stages = spec.model.resolve().num_stages
    windows = counter.windows[:-1]  # the last step's window runs on into the evaluation
    assert len(windows) >= 2 * log_interval
    for i, w in enumerate(windows):
        logging_step = (i + 1) % log_interval == 0
        # The finite check (one read), plus on a logging step every value in one read.
        assert w["reads"] == (2 if logging_step else 1), (i, w)
        # The Hungarian matching's cost matrix, once per stage and image (all have boxes here).
        assert w["copies"] == stages * spec.batch_size_per_worker, (i, w)

    # What is logged is the logging step's own values (not a mean over the interval).
    assert sorted(logger.steps) == list(range(log_interval, len(stepped) + 1, log_interval))
    for step, metrics in logger.steps.items():
        values = stepped[step - 1]
        assert metrics["train/loss"] == values.loss
        assert metrics["train/grad_norm"] == values.grad_norm
        assert {k: metrics[f"train/{k}"] for k in values.terms} == values.terms


def test_step_result_reads_every_value_in_one_transfer(monkeypatch):
    from sparse_rcnn.platform.engine.train_step import StepResult

    result = StepResult(torch.tensor(3.0), {"s0.loss_cls": torch.tensor(1.0),
                        "s0.pos_acc": torch.tensor(50.0, dtype=torch.bfloat16)},
                        torch.tensor(0.5), num_boxes=2.0)  # fmt: skip
    calls = collections.Counter()
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    values = result.read()
    assert sum(calls.values()) == 1
    assert (values.loss, values.grad_norm) == (3.0, 0.5)
    assert values.terms == {"s0.loss_cls": 1.0, "s0.pos_acc": 50.0}
    assert result.loss == pytest.approx(3.0)
