"""Figure and page files of a report: figures as SVG (and PNG), the study page as PDF.

A subject's course figure is written as SVG only unless PNG is asked for (``cartlab report --png``):
the PNG raster is half of a course figure's cost, and a 200-subject report draws 200 of them (issue 17).
The cohort views, few and embedded in ``study.pdf``, keep both.

PNG files are written as 8-bit palette images (a figure of lines and markers loses nothing visible;
the file is about a quarter of Agg's RGBA output). SVG keeps text as text (``svg.fonttype =
"none"``): smaller, searchable, and several times faster to write than glyph outlines.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

__all__ = ["FigureFiles", "save_figure", "figure_png", "write_pdf", "FIGURE_DIR", "safe_stem", "stamp_figure"]

#: Folder (inside the report folder) that holds the figure files.
FIGURE_DIR = "figures"
PNG_DPI = 110


@dataclass(frozen=True)
class FigureFiles:
    """Where a figure was written, relative to the report folder."""

    png: str | None
    svg: str


def safe_stem(text: str) -> str:
    """A file-name stem made of ``[A-Za-z0-9._-]`` only (never a path: no separator, no ``..``)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    return stem or "figure"


#: the band (inches) added above a figure for its stamp: nothing drawn before is covered
STAMP_BAND_IN = 0.22


def stamp_figure(fig: Figure, text: str) -> None:
    """Write ``text`` (e.g. "synthetic data (generated, from no patient)") into the top right corner
    of ``fig``: a PNG or SVG reused on its own still says what its data are. The figure grows by a
    band of :data:`STAMP_BAND_IN` at the top and everything drawn keeps its place in inches from the
    bottom, so the stamp never covers a title (review 33 C6 / 37 C1). No draw is needed."""
    w, h = fig.get_size_inches()
    scale = h / (h + STAMP_BAND_IN)
    fig.set_size_inches(w, h + STAMP_BAND_IN)
    for ax in fig.axes:  # axes positions are figure fractions: the same inches from the bottom
        p = ax.get_position(original=True)
        ax.set_position([p.x0, p.y0 * scale, p.width, p.height * scale])
    for t in fig.texts:  # figure texts (the suptitle) placed in figure fractions
        if t.get_transform() == fig.transFigure:
            x, y = t.get_position()
            t.set_y(y * scale)
    fig.text(0.995, 1 - 0.03 / (h + STAMP_BAND_IN), text, ha="right", va="top", fontsize=7, color="#7a5a00",
             style="italic",
             bbox={"boxstyle": "round,pad=0.2", "facecolor": "#fff4cc", "edgecolor": "#c79a00", "linewidth": 0.6})


def figure_png(fig: Figure, dpi: int = PNG_DPI) -> bytes:
    """The figure as a palette PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    old_dpi = fig.dpi
    fig.dpi = dpi
    try:
        canvas.draw()  # the RGBA buffer straight to Pillow: no PNG encoded and decoded on the way
        img = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
        img = img.convert("RGB")
    finally:
        fig.dpi = old_dpi
    out = io.BytesIO()
    img.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(out, format="PNG")
    return out.getvalue()


def save_figure(fig: Figure, report_dir: str | Path, stem: str, *, png: bool = True) -> FigureFiles:
    """Write ``figures/<stem>.svg`` (and ``figures/<stem>.png`` unless ``png=False``) under ``report_dir``."""
    stem = safe_stem(stem)
    folder = Path(report_dir) / FIGURE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    if png:
        (folder / f"{stem}.png").write_bytes(figure_png(fig))
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "cartlab"}):
        fig.savefig(folder / f"{stem}.svg", format="svg", metadata={"Date": None})  # same figure, same bytes
    return FigureFiles(png=f"{FIGURE_DIR}/{stem}.png" if png else None, svg=f"{FIGURE_DIR}/{stem}.svg")


def write_pdf(html: str, base_dir: str | Path, path: str | Path) -> str | None:
    """Render ``html`` (its relative links resolved in ``base_dir``) to ``path`` with WeasyPrint.

    Returns ``None`` on success, else why no PDF was written (WeasyPrint or its system libraries
    missing): the HTML report does not depend on it."""
    try:
        import weasyprint
    except (ImportError, OSError) as exc:  # OSError: Pango/HarfBuzz libraries missing
        return f"no PDF: WeasyPrint is not usable here ({type(exc).__name__}: {exc})"
    import logging

    # WeasyPrint logs every CSS property it ignores (e.g. print-color-adjust) as a warning
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    weasyprint.HTML(string=html, base_url=str(Path(base_dir).resolve()) + "/").write_pdf(str(path))
    return None
