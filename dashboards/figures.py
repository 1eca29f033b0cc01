"""Matplotlib set-up shared by every dashboard plot: the Agg backend, one figure style, and a
figure as PNG bytes or a ``data:`` URI for self-contained HTML.

Plot functions build a :class:`~matplotlib.figure.Figure` directly (no pyplot state), so they
are pure: same inputs, same figure, nothing global touched, safe in threads and Ray workers.
Artists that tests and readers look for carry a ``gid`` (``"seeds"``, ``"mean_ci"``, ...).
"""

from __future__ import annotations

import base64
import io

import matplotlib
import numpy as np

matplotlib.use("Agg")

from matplotlib.axes import Axes  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

DPI = 110
# One colour per setting, in setting order (matplotlib's tab10, colour-blind friendly enough
# for up to ~6 settings).
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip


def new_figure(width: float = 7.0, height: float = 4.0) -> tuple[Figure, Axes]:
    """A figure of ``width`` x ``height`` inches with one axes, light grid, no top/right spines."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    style_axes(ax)
    return fig, ax


def style_axes(ax: Axes) -> None:
    ax.grid(True, alpha=0.3, linewidth=0.6)
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def empty_figure(title: str, message: str) -> Figure:
    """A small figure that says why there is nothing to draw (kept in reports so the reader
    sees the question was asked)."""
    fig, ax = new_figure(7.0, 1.6)
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, transform=ax.transAxes)
    return fig


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def figure_array(fig: Figure) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of the figure (for image logging)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def data_uri(fig: Figure) -> str:
    """``data:image/png;base64,...`` of the figure, for an ``<img src>``."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(fig)).decode("ascii")


def find(ax: Axes, gid: str) -> list:
    """Artists of ``ax`` (lines, collections, patches, texts) whose gid is ``gid``."""
    artists = [*ax.lines, *ax.collections, *ax.patches, *ax.texts]
    return [a for a in artists if a.get_gid() == gid]
