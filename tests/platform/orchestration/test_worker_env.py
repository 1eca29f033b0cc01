"""What the driver hands every Ray Train worker besides the spec: the process group's backend
and the environment variables of the platform and the collective libraries."""

from __future__ import annotations

from sparse_rcnn.platform.orchestration.cluster import forwarded_env
from sparse_rcnn.platform.orchestration.train import process_group_backend


def test_gpu_runs_get_nccl_for_cuda_tensors_and_gloo_for_cpu_tensors():
    assert process_group_backend(use_gpu=True) == "cpu:gloo,cuda:nccl"
    assert process_group_backend(use_gpu=False) == "gloo"


def test_nccl_and_platform_variables_are_forwarded_others_not(monkeypatch):
    wanted = {
        "SPARSE_RCNN_FAIL_ONCE": "1:0:/tmp/x",
        "NCCL_DEBUG": "INFO",
        "NCCL_SOCKET_IFNAME": "eth0",
        "NCCL_IB_DISABLE": "1",
        "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",
        "GLOO_SOCKET_IFNAME": "eth0",
        "TORCH_DISTRIBUTED_DEBUG": "DETAIL",
    }
    for k, v in wanted.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("UNRELATED_NCCL_NOTE", "no")
    monkeypatch.setenv("HOME_NCCL", "no")
    forwarded = forwarded_env()
    assert {k: forwarded.get(k) for k in wanted} == wanted
    assert "UNRELATED_NCCL_NOTE" not in forwarded and "HOME_NCCL" not in forwarded
    assert "PATH" not in forwarded
