"""The one redaction helper: URI credentials, secret-looking env values, named secrets."""

from __future__ import annotations

import pytest

from sparse_rcnn.platform.redact import (
    MASK,
    is_secret_name,
    redact,
    redact_env,
    redact_uri,
    split_credentials,
)


@pytest.mark.parametrize(
    "uri, shown",
    [("https://alice:s3cr3t@mlflow.example:5000/x", "https://alice:***@mlflow.example:5000/x"),
     ("http://tok3n@10.0.0.1:5000", "http://***@10.0.0.1:5000"),
     ("postgresql://u:p%40ss@db/mlflow", "postgresql://u:***@db/mlflow"),
     ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
     ("sqlite:////tmp/state/mlflow.db", "sqlite:////tmp/state/mlflow.db")],
)  # fmt: skip
def test_uri_credentials_are_masked(uri, shown):
    assert redact_uri(uri) == shown


def test_free_text_loses_uri_credentials_and_named_secrets():
    text = "failed at https://bob:hunter22@host/api with token abcdef123456 (again abcdef123456)"
    out = redact(text, ["abcdef123456", None, ""])
    assert "hunter22" not in out and "abcdef123456" not in out
    assert out == f"failed at https://bob:{MASK}@host/api with token {MASK} (again {MASK})"


@pytest.mark.parametrize(
    "name, secret",
    [("HF_TOKEN", True), ("AWS_SECRET_ACCESS_KEY", True), ("DB_PASSWORD", True),
     ("api_key", True), ("MLFLOW_TRACKING_PASSWORD", True), ("OMP_NUM_THREADS", False),
     ("MLFLOW_TRACKING_USERNAME", False), ("RAY_JOB_STOP_SIGNAL", False)],
)  # fmt: skip
def test_secret_looking_names(name, secret):
    assert is_secret_name(name) is secret


def test_env_values_with_secret_names_are_masked():
    env = {"HF_TOKEN": "hf_abc", "OMP_NUM_THREADS": "1", "URI": "http://u:p@h", "EMPTY_KEY": ""}
    assert redact_env(env) == {"HF_TOKEN": MASK, "OMP_NUM_THREADS": "1",
                               "URI": f"http://u:{MASK}@h", "EMPTY_KEY": ""}  # fmt: skip


def test_split_credentials_moves_them_to_mlflow_env_vars():
    assert split_credentials("https://al%40ce:p%3Ass@mlflow.example:8443/p?q=1") == (
        "https://mlflow.example:8443/p?q=1",
        {"MLFLOW_TRACKING_USERNAME": "al@ce", "MLFLOW_TRACKING_PASSWORD": "p:ss"},
    )
    assert split_credentials("http://127.0.0.1:5000") == ("http://127.0.0.1:5000", {})
