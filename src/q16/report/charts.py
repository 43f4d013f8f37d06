"""The report's figures: flagged counts per class, the score histogram, the class word cloud.

Bar chart and histogram are returned as PNG bytes (the page embeds them); the word cloud is the
paper's documentation figure and is also written on its own as ``flagged_classes.png``.
"""

from __future__ import annotations

import io
import logging
import random
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from q16.errors import Q16Error
from q16.fileio import atomic_path
from q16.review.run import UNKNOWN_CLASS
from q16.text import clean, plot_label

log = logging.getLogger(__name__)

WORD_LIMIT = 40
"""Characters of a class name in the word cloud; longer ones cannot fit the canvas."""


@contextmanager
def _no_glyph_warnings() -> Iterator[None]:
    """Class names in scripts the font lacks are drawn as boxes; one warning per glyph is noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        yield


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    with _no_glyph_warnings():
        fig.savefig(buffer, format="png")
    return buffer.getvalue()


def class_bar_chart(per_class: pd.DataFrame, top: int = 20) -> bytes:
    """Horizontal bars of flagged images for the ``top`` most flagged classes."""
    rows = per_class[per_class["flagged"] > 0].head(top).iloc[::-1]
    fig = Figure(figsize=(7, 0.3 * max(len(rows), 3) + 1.2), dpi=100)
    ax = fig.add_subplot()
    if rows.empty:
        ax.text(0.5, 0.5, "no flagged images", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        # positions, not category names: two names that look alike after cleaning stay apart
        positions = np.arange(len(rows))
        bars = ax.barh(positions, rows["flagged"], color="#c0392b")
        ax.set_yticks(positions, [plot_label(name) for name in rows["class_name"]])
        labels = [
            f"{n}" if pd.isna(s) else f"{n}  ({s:.0%} of class)"
            for n, s in zip(rows["flagged"], rows["share_flagged"], strict=True)
        ]
        ax.bar_label(bars, labels=labels, padding=3, fontsize=8)
        ax.set_xlabel("flagged images")
        ax.set_xlim(0, rows["flagged"].max() * 1.35)
        ax.tick_params(axis="y", labelsize=8)
        ax.set_title(f"most flagged classes (top {len(rows)})")
    with _no_glyph_warnings():
        fig.tight_layout()
    return _png(fig)


def score_histogram(scores: np.ndarray, threshold: float, bins: int = 50) -> bytes:
    """Distribution of p(inappropriate) over every scored image, threshold marked."""
    fig = Figure(figsize=(7, 3.2), dpi=100)
    ax = fig.add_subplot()
    scores = np.asarray(scores, dtype=np.float64)
    scores = scores[np.isfinite(scores)]  # the not-scored images are counted elsewhere
    if scores.size:
        ax.hist(scores, bins=bins, range=(0, 1), color="#34495e")
        ax.set_yscale("log")
        ax.set_ylim(bottom=0.7)
    if np.isfinite(threshold):
        ax.axvline(threshold, color="#c0392b", ls="--", label=f"threshold {threshold:g}")
        ax.legend(loc="upper center")
    ax.set(xlim=(0, 1), xlabel="p(inappropriate)", ylabel="images (log scale)")
    ax.set_title(f"scores of all {scores.size:,} scored images")
    fig.tight_layout()
    return _png(fig)


def _dark_red(*_: object, random_state: Any = None, **__: object) -> str:
    """Reds dark enough to read on white (colormaps such as "Reds" fade to near-white)."""
    rng = random_state or random.Random(0)  # wordcloud passes a random.Random
    return f"hsl({rng.randint(0, 20)}, 75%, {rng.randint(22, 42)}%)"


def class_word_cloud(per_class: pd.DataFrame, path: Path, seed: int = 0) -> Path:
    """Word cloud of flagged class names weighted by flagged count (the paper's figure)."""
    try:
        from wordcloud import WordCloud
    except ImportError as err:
        raise Q16Error(
            "the word cloud needs the wordcloud package: pip install 'q16[report]'"
        ) from err

    counts: dict[str, int] = {}
    for name, n in zip(per_class["class_name"], per_class["flagged"], strict=True):
        if n <= 0 or name == UNKNOWN_CLASS:  # not a class name; the bar chart still shows it
            continue
        word = clean(name, WORD_LIMIT).strip() or "(blank)"  # one line: wordcloud needs it
        counts[word] = counts.get(word, 0) + int(n)
    if counts:
        cloud = WordCloud(
            width=1200,
            height=600,
            background_color="white",
            color_func=_dark_red,
            prefer_horizontal=0.9,
            random_state=seed,
            min_font_size=8,
        )
        try:
            # a single word is drawn at max size regardless of its count; fine for a figure
            cloud.generate_from_frequencies(counts)
            with atomic_path(path) as tmp:
                cloud.to_image().save(tmp, format="PNG")
            return path
        except (ValueError, OSError) as err:  # e.g. no room for the first word
            log.warning("word cloud could not be drawn (%s); writing a placeholder", err)
    fig = Figure(figsize=(12, 6), dpi=100)
    fig.text(0.5, 0.5, "no flagged images" if not counts else "word cloud unavailable",
             ha="center", va="center", fontsize=20)  # fmt: skip
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
