"""The tiny job (jobs/tiny_synthetic.yaml) as a 1-GPU Ray Train run in bf16, tracked in the
embedded MLflow store. Skipped without CUDA (``bench/gpu_check.sh`` runs it on a lent GPU
machine)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("ray", reason="needs Ray (a lent GPU machine may have torch alone)")
pytest.importorskip("mlflow", reason="needs MLflow (a lent GPU machine may have torch alone)")

from mlflow.tracking import MlflowClient  # noqa: E402

from sparse_rcnn.platform.orchestration.train import run_job  # noqa: E402
from sparse_rcnn.platform.spec.load import load_job_spec  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available())"
    ),
]

JOB = Path(__file__).resolve().parents[3] / "jobs" / "tiny_synthetic.yaml"


def test_the_tiny_job_trains_on_one_gpu_in_bf16(local_ray, state_dir):
    spec = load_job_spec(JOB, ["scaling.use_gpu=true", "precision=bf16",
                               "mlflow.experiment=gpu-check"])  # fmt: skip
    outcome = run_job(spec)

    c = MlflowClient(outcome.tracking_uri)
    run = c.get_run(outcome.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["precision"] == "bf16"
    assert run.data.params["scaling.use_gpu"] == "True"
    assert "cpu" not in run.data.tags["hardware"]
    # Rank 0 trained on CUDA: the CUDA memory metric is logged, not the CPU's max RSS.
    assert c.get_metric_history(outcome.run_id, "train/memory_gb")
    assert not c.get_metric_history(outcome.run_id, "train/max_rss_gb")
    ap = c.get_metric_history(outcome.run_id, "val/AP")
    assert sorted(m.step for m in ap) == [2, 4]  # eval_interval 2, 4 epochs; each once
    losses = c.get_metric_history(outcome.run_id, "train/loss")
    steps = [m.step for m in losses]
    assert len(steps) == len(set(steps)) > 0
    assert all(m.value == m.value and m.value < 1e4 for m in losses)  # finite
    assert outcome.metrics["AP"] >= 0 and outcome.checkpoint_path
