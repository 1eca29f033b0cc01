"""Metric, tag and artifact names, defined once for the trainer, the studies and dashboards."""

from __future__ import annotations

TRAIN_PREFIX = "train/"  # + loss term: train/loss_cls, train/stage0.loss_cls, ...
TRAIN_LOSS = TRAIN_PREFIX + "loss"
TRAIN_LR = TRAIN_PREFIX + "lr"
TRAIN_GRAD_NORM = TRAIN_PREFIX + "grad_norm"
TRAIN_IMAGES_PER_S = TRAIN_PREFIX + "images_per_s"
TRAIN_EPOCH = TRAIN_PREFIX + "epoch"  # beside the train metrics: their step is the iteration
TRAIN_MEMORY_GB = TRAIN_PREFIX + "memory_gb"  # CUDA peak allocated
TRAIN_MAX_RSS_GB = TRAIN_PREFIX + "max_rss_gb"  # CPU: the process's peak resident memory
EVAL_PREFIX = "val/"  # + COCO metric name: val/AP, val/AP50, ...
AP = EVAL_PREFIX + "AP"
AP50 = EVAL_PREFIX + "AP50"

TAG_GIT_COMMIT = "git_commit"
TAG_RAY_JOB_ID = "ray_job_id"
TAG_HARDWARE = "hardware"
TAG_SEED_PREFIX = "seed."
TAG_ERROR = "error"
TAG_NOTE = "mlflow.note.content"  # the run description the UI shows on the Overview page
# Where a Ray Train run's workers run, comma-separated in rank order; set by rank 0 at every
# start of the worker group (after a restart they name the new placement).
TAG_WORKER_NODE_IDS = "ray.worker_node_ids"
TAG_WORKER_NODE_IPS = "ray.worker_node_ips"
# Set when the run ends after a restart: the (1-based) epoch of the checkpoint it resumed from.
TAG_RESUMED_AFTER_EPOCH = "resumed_after_epoch"

ARTIFACT_SPEC = "job_spec.yaml"
ARTIFACT_CHECKPOINT_DIR = "checkpoint"
ARTIFACT_DETECTIONS_DIR = "detections"

# Seed-variance studies: the parent run and each trial's child run carry these tags.
TAG_STUDY_ID = "study.id"
TAG_STUDY_ROLE = "study.role"  # "parent" or "trial"
TAG_STUDY_TRIAL = "study.trial"  # the trial key, e.g. s0-all-r2
TAG_STUDY_SETTING = "study.setting"  # the setting label, e.g. optimizer.lr=0.002
TAG_STUDY_SOURCE = "study.source"  # all / init / data_order / augmentation / nondeterminism
TAG_STUDY_DONE = "study.done"  # "true" once the trial's result artifact is written
ARTIFACT_TRIAL_RESULT = "trial_result.json"  # the finished trial's result, read on resume
TAG_STUDY_RESULT_LEGACY = "study.result"  # the result as a JSON tag, earlier versions
# Child runs' params naming their place in the study, so "group by" needs no configuration.
PARAM_STUDY_SETTING = "study.setting"
PARAM_STUDY_SOURCE = "study.source"
PARAM_STUDY_SEED = "study.seed"
ARTIFACT_REPORT_HTML = "report.html"
ARTIFACT_REPORT_FIGURES_DIR = "figures"
# Training runs: evaluation pictures logged with log_image (key, step = epoch).
IMAGE_DETECTIONS = "val/detections"
ARTIFACT_EVAL_FIGURES_DIR = "evaluation"

# The parent run: per setting and per comparison, named by setting label.
STUDY_PREFIX = "study/"
TAG_VERDICT_PREFIX = "study.verdict."  # + comparison name: different / equivalent / ...
ARTIFACT_TRIALS_TABLE = "trials.json"  # per-trial results, logged with MlflowClient.log_table
# A sequential study's decision after each wave, on the parent run at step = wave.
STUDY_DECIDED = "study/decided"  # comparisons answered so far: different or equivalent
STUDY_OPEN = "study/open"  # comparisons still open (the next wave runs their settings)
STUDY_WAVE_SEEDS = "study/seeds_per_setting"  # seeds per setting after the wave
SEQ_METRICS = ("seq_diff", "seq_rci_low", "seq_rci_high", "seq_t", "seq_boundary")  # per comparison
TAG_WAVE = "study.wave"  # the last decided wave
TAG_SEQ_VERDICT_PREFIX = "study.sequential."  # + comparison name: different / equivalent / open ...


def label_key(label: str) -> str:
    """A setting label as one metric-name segment: MLflow allows letters, digits, ``_ - . /``,
    space and colon, and ``/`` would split the name; ``lr=0.005`` -> ``lr 0.005``, ``,`` and
    ``=`` become spaces, anything else not allowed ``_``."""
    out = []
    for ch in label.replace(",", " ").replace("=", " "):
        out.append(ch if ch.isalnum() or ch in "_-. " else "_")
    key = " ".join("".join(out).split())
    return key if key.strip(".") else "_" + key
