"""torchvision, imported without importing ``torch._dynamo`` (~1.2 s of every process start).

Import torchvision through this module (``from sparse_rcnn.models.vision import torchvision``)
everywhere in the package.

Why: ``torchvision.ops.roi_align`` imports ``torch._dynamo.utils`` for one function,
``is_compile_supported``, which it calls only when torchvision's C++ ops are missing, or when
deterministic algorithms run on CUDA. Importing ``torch._dynamo`` took ~1.2 s of CPU of the
~1.3 s that ``import torchvision`` took on the bench machine (``python -X importtime``), and
every seed-study trial, Ray Train worker and model-building command pays it when it starts: in
a study, before the first trial can train, on every core at once.

How: while torchvision is imported, ``sys.modules`` holds a stand-in for
``torch._dynamo.utils`` with only that function, which imports the real one on its first call.
The stand-in is removed as soon as torchvision is imported, so any later ``import
torch._dynamo`` (``torch.compile``) loads the real package. Where it cannot help (torchvision
or ``torch._dynamo`` already imported) or does not suffice (a torchvision that imports more of
``torch._dynamo``), torchvision is imported plainly.
"""

from __future__ import annotations

import sys
import types

_UTILS = "torch._dynamo.utils"


def is_compile_supported(device_type: str) -> bool:
    """``torch._dynamo.utils.is_compile_supported``, imported on the first call."""
    from torch._dynamo.utils import is_compile_supported as real

    return real(device_type)


def _import_torchvision() -> types.ModuleType:
    if "torchvision" in sys.modules or "torch._dynamo" in sys.modules:
        import torchvision

        return torchvision
    stand_in = types.ModuleType(_UTILS)
    stand_in.is_compile_supported = is_compile_supported  # type: ignore[attr-defined]
    sys.modules[_UTILS] = stand_in
    try:
        import torchvision
    except ImportError:
        # This torchvision needs more of torch._dynamo: forget the partial import, and import
        # it plainly (its C++ ops are already registered with torch, which is harmless).
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        del sys.modules[_UTILS]
        import torchvision
    finally:
        if sys.modules.get(_UTILS) is stand_in:
            del sys.modules[_UTILS]
    return torchvision


torchvision = _import_torchvision()
