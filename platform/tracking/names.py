"""Metric, tag and artifact names, defined once for the trainer, the studies and dashboards."""

from __future__ import annotations

TRAIN_PREFIX = "train/"
EVAL_PREFIX = "val/"  # + COCO metric name: val/AP, val/AP50, ...
AP = EVAL_PREFIX + "AP"
AP50 = EVAL_PREFIX + "AP50"

TAG_GIT_COMMIT = "git_commit"
TAG_RAY_JOB_ID = "ray_job_id"
TAG_HARDWARE = "hardware"
TAG_SEED_PREFIX = "seed."
TAG_ERROR = "error"

ARTIFACT_SPEC = "job_spec.yaml"
ARTIFACT_CHECKPOINT_DIR = "checkpoint"
ARTIFACT_DETECTIONS_DIR = "detections"
