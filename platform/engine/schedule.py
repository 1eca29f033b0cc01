"""Learning-rate schedule of the reference recipes (mmcv): linear warmup by iteration, then
step decay by epoch."""

from __future__ import annotations


def lr_factor(
    iteration: int,
    epoch: int,
    lr_steps: list[int] | tuple[int, ...],
    gamma: float = 0.1,
    warmup_iters: int = 500,
    warmup_ratio: float = 0.001,
) -> float:
    """Multiplier of the base lr at global ``iteration`` (0-based) within ``epoch`` (0-based).

    step factor = gamma ** (number of lr_steps <= epoch), i.e. with steps [8, 11] epochs 0-7
    run at 1, 8-10 at 0.1 and 11 at 0.01. During the first ``warmup_iters`` iterations the
    factor is multiplied by 1 - (1 - iteration / warmup_iters) * (1 - warmup_ratio).
    """
    factor = gamma ** sum(1 for s in lr_steps if epoch >= s)
    if iteration < warmup_iters:
        factor *= 1 - (1 - iteration / warmup_iters) * (1 - warmup_ratio)
    return factor
