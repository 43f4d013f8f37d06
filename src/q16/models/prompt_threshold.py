"""A prompt file's own threshold: chosen on labelled data, stored in its metadata.

``train.py``/``evaluate.py`` write ``thresholds.json`` (per method: the lowest threshold that
reaches a target precision). :func:`store_threshold` copies such a threshold (or one given by
hand) into a ``prompts.safetensors``, so that a ``heads:`` entry without its own ``threshold``
scores with the threshold the prompt was validated at.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from q16.errors import Q16Error, check_float
from q16.fileio import atomic_path
from q16.models.prompt_io import PromptMetadata, load_prompt
from q16.userfiles import read_user_text


def threshold_from_json(path: str | Path, method: str | None = None) -> tuple[float, str]:
    """The operating point of ``method`` (the only one if None) in a ``thresholds.json``,
    and a line saying where it came from."""
    path = Path(path).expanduser()
    try:
        points = json.loads(read_user_text(path, "thresholds.json"))
    except (ValueError, RecursionError) as err:
        raise Q16Error(
            f"{path}: not a readable thresholds.json ({err.__class__.__name__})"
        ) from None
    if not isinstance(points, dict) or not points:
        raise Q16Error(f"{path}: expected thresholds per method, as evaluate.py writes them")
    if method is None:
        if len(points) != 1:
            raise Q16Error(
                f"{path}: several methods ({', '.join(map(str, points))}); pass --method"
            )
        method = str(next(iter(points)))
    point = points.get(method)
    if not isinstance(point, dict):
        raise Q16Error(f"{path}: no method {method!r} (it has {', '.join(map(str, points))})")
    if point.get("threshold") is None:
        raise Q16Error(
            f"{path}: {method} reached no threshold at target precision "
            f"{point.get('target_precision')}; choose a threshold by hand (--threshold)"
        )
    value = check_float(f"{path}: {method} threshold", point.get("threshold"), 0.0, 1.0)
    target = point.get("target_precision")
    return value, f"target precision {target} for {method} in {path.name}"


def store_threshold(
    prompt: str | Path, threshold: float, source: str, out: str | Path | None = None
) -> Path:
    """Write ``prompt`` (a q16 ``.safetensors``) again with ``threshold`` in its metadata
    (atomically; in place unless ``out``)."""
    threshold = check_float("threshold", threshold, 0.0, 1.0)
    path = Path(prompt).expanduser()
    if path.suffix.lower() != ".safetensors":
        raise Q16Error(
            f"{path.name}: only q16 prompts.safetensors files carry a threshold; the paper's "
            ".p and .npy files have no metadata"
        )
    _, meta = load_prompt(path)  # checked as any prompt file is
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise Q16Error(f"{path}: not a readable safetensors file ({err})") from err
    meta = replace(meta, threshold=threshold, threshold_from=source)
    target = Path(out).expanduser() if out else path
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        save_file(tensors, str(tmp), metadata=PromptMetadata.to_strings(meta))
    return target
