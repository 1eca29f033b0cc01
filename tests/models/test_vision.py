"""torchvision through sparse_rcnn.models.vision: no torch._dynamo at import, the same ops."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


_ROI_ALIGN = """
feats = torch.arange(64.0).reshape(1, 1, 8, 8)
box = [torch.tensor([[0.5, 1.0, 6.0, 5.5]])]
print(torchvision.ops.roi_align(feats, box, 3, aligned=True).flatten().tolist())
"""


def test_building_the_model_imports_no_torch_dynamo_and_roi_align_is_unchanged():
    ours = _run(
        textwrap.dedent(
            """
            import sys, torch
            from sparse_rcnn.models.detector import SparseRCNN
            from sparse_rcnn.models.vision import torchvision
            print("torch._dynamo" in sys.modules, "torch._dynamo.utils" in sys.modules)
            """
        )
        + _ROI_ALIGN
    )
    plain = _run("import torch, torchvision\n" + _ROI_ALIGN)  # the oracle: a plain import
    flags, pooled = ours.splitlines()
    assert flags == "False False"
    assert pooled == plain and len(eval(pooled)) == 9


def test_torch_dynamo_imports_whole_afterwards_and_torchvision_uses_the_real_check():
    out = _run(
        """
        import sys
        from sparse_rcnn.models.vision import torchvision
        import torch._dynamo
        from torch._dynamo.utils import is_compile_supported as real
        module = sys.modules["torchvision.ops.roi_align"]
        print(hasattr(torch._dynamo, "reset"), module.is_compile_supported("cpu") == real("cpu"))
        """
    )
    assert out == "True True"


def test_an_earlier_plain_import_is_left_alone():
    out = _run(
        """
        import sys, torchvision
        from sparse_rcnn.models import vision
        print(vision.torchvision is torchvision, "torch._dynamo" in sys.modules)
        """
    )
    assert out == "True True"
