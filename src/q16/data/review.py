"""A curator's filled-in ``review.csv`` as training data (``data=review``).

Labels come from the decisions (``remove`` = 1 inappropriate, ``keep`` = 0 appropriate;
``unsure`` and blank rows are dropped and counted). Features are the run's saved embeddings
(``infer.save_embeddings=true``): the row of ``(shard, key)`` in ``scores/<shard>.parquet`` is
the row in ``embeddings/<shard>.npy``, so no image is decoded and no image tower runs.

Every cell is hostile: rows are matched to the run's own images by :mod:`q16.review.match` (the
rule ``q16 apply`` uses: never turned into a path, exact with or without the spreadsheet quote),
and a review that does not fit the run is a one-line error saying what to do.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from q16.data.labeled import LabeledImages
from q16.errors import Q16Error
from q16.models.backbone import base_model_name
from q16.outdir import (
    EMBEDDINGS_DIR,
    EMBEDDINGS_META_FILE,
    SCORES_DIR,
    embeddings_path,
    scores_path,
)
from q16.review.match import Image, match_images, one_decision_per_image, show
from q16.review.sheet import read_review
from q16.review.versions import shard_versions

log = logging.getLogger(__name__)

LABELS = {"remove": 1, "keep": 0}
"""Decisions that train; ``unsure`` and blank ones are dropped."""


@dataclass
class ReviewedFeatures:
    """The decided images of a review with their saved embeddings, ready to train on."""

    data: LabeledImages
    features: torch.Tensor
    space: dict[str, Any]
    """``embeddings/meta.json`` of the run: model, pretrained, weights, embed_dim."""
    lineage: dict[str, Any] = field(default_factory=dict)
    """``path``, ``sha256`` and ``n_decisions`` of the review (for the prompt file)."""

    def check_model(self, model: str) -> None:
        """The configured model must be the one that made the embeddings (before any weights
        load): another model's prompts would live in another embedding space."""
        made_by = self.space.get("model")
        if made_by and base_model_name(str(made_by)) != base_model_name(model):
            raise Q16Error(
                f"data=review: the run's embeddings were made by model {made_by}, not {model}; "
                f"pass model={base_model_name(str(made_by))}"
            )

    def check_backbone(self, weights: str | None, embed_dim: int) -> None:
        """Same weights and width as the embeddings, or a one-line error."""
        dim, made_with = self.space.get("embed_dim"), self.space.get("weights")
        if dim != embed_dim or (made_with is not None and made_with != weights):
            raise Q16Error(
                f"data=review: the run's embeddings (weights {made_with}, width {dim}) were not "
                f"made by this model (weights {weights}, width {embed_dim}); pass the run's "
                "model= and model.pretrained="
            )


@dataclass
class ReviewDecisions:
    """``data=review``: ``path`` = a filled-in review.csv; ``run_dir`` = the inference out_dir
    it was made from (default: the review's folder). ``path`` may list several reviews of one
    run (``'data.path=[OUT/review.csv,OUT/review_next.csv]'``): rounds of the loop add up."""

    path: str | Sequence[str]
    run_dir: str | None = None
    name: str = "review"

    def load(self) -> LabeledImages:
        """Reviews train on saved embeddings (:meth:`load_features`), in one split only."""
        raise Q16Error("data=review trains with task=single_split only (not experiment=smid_cv)")

    def load_features(self) -> ReviewedFeatures:
        listed = [self.path] if isinstance(self.path, str) else list(self.path)
        paths = [Path(str(p)).expanduser() for p in listed]
        if not paths:
            raise Q16Error("data.path=[]: name at least one review.csv")
        review_path = paths[0]
        run = Path(self.run_dir).expanduser() if self.run_dir else review_path.parent
        space = read_space(run)
        known = _run_shards(run)
        images = {(shard, key) for shard, keys in known.items() for key in keys}
        versions = shard_versions(sorted((run / SCORES_DIR).glob("*.parquet")))
        decisions = merge([read_decisions(path, images, run, versions) for path in paths], paths)
        rows = [(s, known[s][k], label) for (s, k), label in decisions.images.items()]
        features, labels, names = _gather(rows, run, int(space["embed_dim"]))
        dropped = {"unsure_or_blank": len(decisions.undecided)}
        if len(features) < len(rows):
            dropped["non_finite_embedding"] = len(rows) - len(features)
        if len(np.unique(labels)) < 2:
            only = "remove" if labels.size and labels[0] == 1 else "keep"
            raise Q16Error(
                f"{review_path}: all {len(labels)} usable decisions are {only!r}; training "
                "needs both keep and remove decisions: review more images"
            )
        data = LabeledImages(
            paths=names,
            labels=labels,
            name=self.name,
            dropped=dropped,
            groups=np.arange(len(labels)),
        )
        files = [{"path": str(p.resolve()), "sha256": sha256_file(p)} for p in paths]
        lineage: dict[str, Any] = {
            **(files[0] if len(files) == 1 else {"files": files}),
            "n_decisions": len(labels),
        }
        log.info(
            "%s: %d decisions (%d remove, %d keep), %d unsure/blank dropped",
            review_path,
            len(labels),
            int(labels.sum()),
            int((labels == 0).sum()),
            dropped["unsure_or_blank"],
        )
        return ReviewedFeatures(data, torch.from_numpy(features), space, lineage)


@dataclass
class Decisions:
    """The decided rows (shard, key, label) and how many rows were unsure or blank."""

    images: dict[Image, int]
    """Each decided image of the run (its exact shard and key) and its label."""
    undecided: list[int]


def read_decisions(
    path: Path, known: set[Image], run: Path, versions: dict[str, str] | None = None
) -> Decisions:
    """keep/remove decisions of a review, matched to the run's images (``q16.review.match``:
    the rule ``q16 apply`` uses), one decision per image, or a one-line error."""
    review = read_review(path)
    decision = review["decision"].tolist()
    undecided = [row for row, what in enumerate(decision) if what not in LABELS]
    if len(undecided) == len(decision):
        raise Q16Error(
            f"{path}: no keep or remove decisions ({len(review)} rows, all unsure or blank); "
            "fill in the decision column before training on it"
        )
    hint = "was the review made for another run? Pass data.run_dir=<that run's infer.out_dir>"
    matched = match_images(review, known, str(path), run, hint, versions)
    chosen = one_decision_per_image(matched, decision, str(path))
    images = {image: LABELS[what] for image, what in chosen.items() if what in LABELS}
    return Decisions(images, undecided)


def merge(reviews: list[Decisions], paths: list[Path]) -> Decisions:
    """Decisions of several reviews of one run; an image decided both ways is an error."""
    images: dict[Image, int] = {}
    for review, path in zip(reviews, paths, strict=True):
        for image, label in review.images.items():
            if images.setdefault(image, label) != label:
                raise Q16Error(
                    f"{path}: {show(image)} contradicts its decision in an earlier review; "
                    "give each image one decision"
                )
    return Decisions(images, [row for review in reviews for row in review.undecided])


def read_space(run: Path) -> dict[str, Any]:
    """``embeddings/meta.json`` of the run, or a one-line error saying how to make it."""
    if not (run / SCORES_DIR).is_dir():
        raise Q16Error(
            f"{run}: no {SCORES_DIR}/ folder: not an inference out_dir; put review.csv in the run "
            "it was made from or pass data.run_dir=<that run's infer.out_dir>"
        )
    meta_file = run / EMBEDDINGS_DIR / EMBEDDINGS_META_FILE
    if not meta_file.is_file():
        raise Q16Error(
            f"{run}: the run saved no embeddings; re-run infer.py with "
            f"infer.out_dir={run} infer.save_embeddings=true, then train on the review"
        )
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:
        raise Q16Error(f"{meta_file}: not readable JSON ({type(err).__name__})") from err
    dim = meta.get("embed_dim") if isinstance(meta, dict) else None
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise Q16Error(f"{meta_file}: needs a JSON object with a positive integer embed_dim")
    return dict(meta)


def _run_shards(run: Path) -> dict[str, dict[str, int]]:
    """Each shard of the run -> {key: row in its parquet and npy}."""
    shards = {}
    for parquet in sorted((run / SCORES_DIR).glob("*.parquet")):
        try:
            keys = pq.read_table(parquet, columns=["key"]).column("key").to_pylist()
        except Exception as err:  # ArrowInvalid, OSError, KeyError: a cut or foreign file
            raise Q16Error(f"{parquet}: not a readable scores file ({type(err).__name__})") from err
        shards[parquet.stem] = {str(k): i for i, k in enumerate(keys) if k is not None}
    return shards


def _gather(
    rows: list[tuple[str, int, int]], run: Path, dim: int
) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """Embeddings and labels of the located rows; rows with NaN/inf embeddings dropped."""
    by_shard: dict[str, list[tuple[int, int]]] = {}
    for shard, row, label in rows:
        by_shard.setdefault(shard, []).append((row, label))
    chunks: list[np.ndarray] = []
    labels: list[int] = []
    names: list[Path] = []
    for shard, items in sorted(by_shard.items()):
        npy = embeddings_path(run, shard)
        n_rows = int(pq.read_metadata(scores_path(run, shard)).num_rows)
        try:
            array = np.load(npy, mmap_mode="r", allow_pickle=False)
        except Exception as err:  # missing, pickled, cut: say which file
            raise Q16Error(
                f"{npy}: no readable saved embeddings ({type(err).__name__}); re-run infer.py "
                "with infer.save_embeddings=true"
            ) from err
        if array.dtype.kind != "f" or array.shape != (n_rows, dim):
            raise Q16Error(
                f"{npy}: shape {array.shape} {array.dtype}, expected ({n_rows}, {dim}) floats"
            )
        picked = np.asarray(array[[row for row, _ in items]], dtype=np.float32)
        finite = np.asarray(np.isfinite(picked).all(axis=1), dtype=bool)
        chunks.append(picked[finite])
        kept = [item for item, ok in zip(items, map(bool, finite), strict=True) if ok]
        labels.extend(label for _, label in kept)
        names.extend(Path(shard) / str(row) for row, _ in kept)
    return np.concatenate(chunks), np.asarray(labels, dtype=np.int64), names


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
