"""DistContext's collectives: on the device the process group's backend takes (gloo: CPU, NCCL:
the rank's CUDA device), checked without a GPU by recording what reaches ``all_reduce``; and a
real 2-process gloo group."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sparse_rcnn.platform.engine.distributed import DistContext, collective_device, rank_device

CUDA1 = torch.device("cuda", 1)


@pytest.mark.parametrize(
    ("backend", "expected"),
    [
        ("cpu:gloo,cuda:gloo", torch.device("cpu")),  # what dist.get_backend_config() says for gloo
        ("cuda:nccl", CUDA1),  # ... for nccl: CUDA tensors only
        ("cpu:gloo,cuda:nccl", torch.device("cpu")),  # what orchestration asks Ray Train for
        ("cuda:nccl,cpu:gloo", torch.device("cpu")),
        ("cpu:gloo", torch.device("cpu")),
    ],
)
def test_collective_device_follows_the_groups_backends(backend, expected):
    assert collective_device(backend, CUDA1) == expected
    assert DistContext(0, 2, CUDA1, backend).collective_device == expected


class _Stop(Exception):
    pass


@pytest.mark.parametrize(
    ("backend", "device"),
    [
        ("cpu:gloo,cuda:gloo", torch.device("cpu")),
        ("cpu:gloo,cuda:nccl", torch.device("cpu")),
        # NCCL alone: "meta" stands in for the rank's CUDA device (no GPU here).
        ("cuda:nccl", torch.device("meta")),
    ],
)
def test_mean_and_any_hand_all_reduce_tensors_on_the_collective_device(
    backend, device, monkeypatch
):
    ctx = DistContext(0, 2, device, backend)
    seen: list[torch.device] = []

    def all_reduce(tensor, op=None):
        seen.append(tensor.device)
        raise _Stop  # before the read: a meta tensor has no value

    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    for call in (lambda: ctx.mean(3), lambda: ctx.any(True)):
        with pytest.raises(_Stop):
            call()
    expected = ctx.collective_device
    assert seen == [expected, expected]
    assert expected == (device if backend == "cuda:nccl" else torch.device("cpu"))


def test_a_device_flag_goes_to_the_all_reduce_without_a_read_on_nccl(monkeypatch):
    """On NCCL alone the flag tensor itself is reduced (read once, after); with a CPU backend it
    is read first and a CPU tensor is reduced."""
    seen = []

    def all_reduce(tensor, op=None):
        seen.append(tensor.device)
        raise _Stop

    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    flag = torch.ones((), dtype=torch.bool, device="meta")
    with pytest.raises(_Stop):
        DistContext(0, 2, torch.device("meta"), "cuda:nccl").any(flag)
    assert seen == [torch.device("meta")]


def test_single_process_reads_a_flag_tensor():
    ctx = DistContext()
    assert ctx.any(torch.tensor(True)) is True and ctx.any(torch.tensor(False)) is False
    assert ctx.mean(3) == 3.0


def test_rank_device_gives_a_bare_cuda_the_local_rank(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert rank_device("cuda") == torch.device("cuda", 3)
    assert rank_device("cuda:1") == torch.device("cuda", 1)
    assert rank_device("cpu") == torch.device("cpu")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    ctx = DistContext.current()
    results = {
        "backend": ctx.backend,
        "mean": ctx.mean(rank + 1),  # (1 + 2) / 2
        "any_one": ctx.any(rank == 1),
        "any_none": ctx.any(False),
        "any_tensor": ctx.any(torch.tensor(rank == 0)),
        "gather": ctx.gather({"rank": rank}),
        "broadcast": ctx.broadcast(f"from {rank}"),
    }
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_two_gloo_processes_agree(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["backend"] == "cpu:gloo,cuda:gloo"
    for r in (r0, r1):
        assert r["mean"] == 1.5
        assert r["any_one"] is True and r["any_none"] is False and r["any_tensor"] is True
        assert r["broadcast"] == "from 0"
    assert r0["gather"] == [{"rank": 0}, {"rank": 1}] and r1["gather"] is None
