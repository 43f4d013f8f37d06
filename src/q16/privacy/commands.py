"""What ``q16 release`` and ``q16 remove`` do, as functions the command line and tests call."""

from __future__ import annotations

import json
import logging
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from q16.errors import Q16Error
from q16.folders import check_folder, folder_lock
from q16.outdir import EMBEDDINGS_DIR, SUMMARY_FILE
from q16.privacy.boxes import run_boxes, write_boxes_parquet
from q16.privacy.release import write_release
from q16.privacy.removal import Embed, find_copies
from q16.privacy.removal_page import RemovalFiles, check_removal_replaceable, write_removal
from q16.privacy.requests import RequestItem, key_items, photo_items, sha256_items
from q16.review.inputs import input_folders
from q16.review.run import load_run

log = logging.getLogger(__name__)


def release(out_dir: Path, dest: Path, head: str, keep_unscored: bool, boxes: Path | None) -> str:
    """The blurred release (and the boxes parquet); a line per output for the terminal."""
    counts = write_release(out_dir, dest, head, keep_unscored)
    lines = [
        f"release: {dest} ({counts.shards_written} shards written, {counts.shards_already_done} "
        f"already done; {counts.images_blurred} images with {counts.boxes_blurred} faces "
        f"blurred, {counts.samples_omitted} unscored samples and {counts.members_omitted} unscored "
        f"image members {'copied unblurred' if keep_unscored else 'left out'}: "
        f"{dest / 'omitted.csv'})"
    ]
    if boxes is not None:
        rows = write_boxes_parquet(run_boxes(out_dir, head), boxes)
        lines.append(f"boxes: {boxes} ({rows} images; img2dataset bbox_col=face_bboxes)")
    return "\n".join(lines)


def remove(
    out_dir: Path,
    dest: Path | None,
    photos: Path | None,
    sha256: Path | None,
    keys: Path | None,
    pdq_threshold: int,
    cosine_threshold: float,
) -> RemovalFiles:
    """Candidates for a removal request, written for a person to confirm."""
    summary = _summary(out_dir)
    items: list[RequestItem] = []
    if photos is not None:
        items += photo_items(photos)
    if sha256 is not None:
        items += sha256_items(sha256)
    if keys is not None:
        items += key_items(keys)
    if not items:
        raise Q16Error("say what to remove: --photos DIR, --sha256 FILE and/or --keys FILE")
    target = _removal_folder(out_dir, dest)
    with ExitStack() as stack:
        if target.resolve() != out_dir.resolve():  # OUT itself: the command holds its lock
            stack.enter_context(folder_lock(target, "--dest"))
        check_removal_replaceable(target)  # under the lock, before the search and any write
        embed = _embedder(out_dir, summary) if photos is not None else None
        result = find_copies(
            out_dir,
            items,
            pdq_threshold=pdq_threshold,
            cosine_threshold=cosine_threshold,
            embed=embed,
        )
        return write_removal(target, items, result, bool(summary.get("random_weights")))


def _removal_folder(out_dir: Path, dest: Path | None) -> Path:
    """``--dest`` (default ``OUT/removal``): OUT itself, or a new, empty or q16's folder
    outside the run's inputs (:mod:`q16.folders`)."""
    path = (dest or out_dir / "removal").expanduser()
    if path.resolve() == out_dir.expanduser().resolve():
        return out_dir
    return check_folder(path, input_folders(load_run(out_dir)), "--dest")


def _summary(out_dir: Path) -> dict[str, object]:
    path = out_dir / SUMMARY_FILE
    if not path.is_file():
        raise Q16Error(f"{out_dir} has no {SUMMARY_FILE}: score the dataset with infer.py first")
    summary = json.loads(path.read_text())
    if not isinstance(summary, dict):
        raise Q16Error(f"{path} is not a q16 summary")
    return summary


def _embedder(out_dir: Path, summary: dict[str, object]) -> Embed | None:
    """CLIP image embeddings of the request photos in the run's space, where it saved some
    with real weights (a random-weight model's cosines say nothing about likeness)."""
    if not (out_dir / EMBEDDINGS_DIR).is_dir():
        return None
    if summary.get("random_weights"):
        log.warning("the run used RANDOM weights: no CLIP likeness search, hashes only")
        return None
    import torch
    from PIL import Image

    from q16.models.backbone import BackboneSpec, load_backbone

    torch.manual_seed(0)  # infer.py's seed: a random-weight model is the run's own
    pretrained = summary.get("pretrained")
    spec = BackboneSpec(
        str(summary.get("model")), pretrained=None if pretrained is None else str(pretrained)
    )
    backbone = load_backbone(spec, "cpu")

    def embed(images: list[np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            pixels = torch.stack([backbone.preprocess(Image.fromarray(i)) for i in images])
            return backbone.encode_image(pixels).float().numpy()

    return embed
