"""Hand-made inference out_dirs with saved embeddings and a filled-in review (the contract
infer.py and the q16 command write), for the learn-from-reviewers tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from q16.models.prompt_io import PromptMetadata, save_prompt
from q16.models.prompts import ClassEmbeddingHead
from q16.outdir import FLAGGED_COLUMNS
from q16.spreadsheet import write_text_csv

DIM = 64
"""q16-tiny's embedding width."""
TINY_WEIGHTS = "random-init"


def reviewer_direction(dim: int = DIM) -> np.ndarray:
    """The curator's rule: remove when the embedding points along this direction."""
    direction = np.zeros(dim, dtype=np.float32)
    direction[0] = 1.0
    return direction


def make_run(
    root: Path,
    n_per_shard: int = 120,
    shards: tuple[str, ...] = ("shard-a", "shard-b"),
    seed: int = 0,
    model: str = "q16-tiny",
) -> Path:
    """An out_dir: scores/<shard>.parquet, embeddings/<shard>.npy, embeddings/meta.json."""
    out = root / "run"
    (out / "scores").mkdir(parents=True)
    (out / "embeddings").mkdir()
    rng = np.random.default_rng(seed)
    for shard in shards:
        emb = rng.normal(size=(n_per_shard, DIM)).astype(np.float32)
        emb[:, :3] *= 4.0  # a few strong directions, as in CLIP's space: one is the reviewer's
        keys = [f"{i:06d}" for i in range(n_per_shard)]
        table = pa.table(
            {
                "key": keys,
                "shard": [shard] * n_per_shard,
                "source": [str(root / shard)] * n_per_shard,
                "file_name": [f"{k}.jpg" for k in keys],
                "p_inappropriate": rng.uniform(size=n_per_shard),
            }
        )
        pq.write_table(table, out / "scores" / f"{shard}.parquet")
        np.save(out / "embeddings" / f"{shard}.npy", emb)
    meta = {"model": model, "pretrained": None, "weights": TINY_WEIGHTS, "embed_dim": DIM}
    (out / "embeddings" / "meta.json").write_text(json.dumps(meta))
    (out / "summary.json").write_text(json.dumps({"threshold": 0.5, "model": model}))
    (out / "flagged.csv").write_text(",".join(FLAGGED_COLUMNS) + "\n")
    return out


def write_filled_review(out: Path, name: str = "review.csv", unsure_every: int = 7) -> Path:
    """Every scored image decided by the reviewer's rule; every ``unsure_every``-th row unsure
    and the next blank (both must be dropped)."""
    rows = []
    direction = reviewer_direction()
    for parquet in sorted((out / "scores").glob("*.parquet")):
        keys = pq.read_table(parquet).column("key").to_pylist()
        emb = np.load(out / "embeddings" / f"{parquet.stem}.npy")
        for i, (key, vector) in enumerate(zip(keys, emb, strict=True)):
            decision = "remove" if vector @ direction > 0 else "keep"
            if i % unsure_every == 0:
                decision = "unsure"
            elif i % unsure_every == 1:
                decision = ""
            rows.append({"decision": decision, "shard": parquet.stem, "key": key, "note": ""})
    path = out / name
    write_text_csv(pd.DataFrame(rows), path)
    return path


def write_init_prompt(path: Path, model: str = "q16-tiny", dim: int = DIM) -> Path:
    """Soft prompts that ignore the reviewer's direction (orthogonal to it): AUROC ~ 0.5."""
    embeddings = torch.zeros(2, dim)
    embeddings[0, 1], embeddings[1, 1] = -1.0, 1.0
    embeddings[:, 2] = 0.5
    head = ClassEmbeddingHead(embeddings, 100.0, trainable=False)
    meta = PromptMetadata(kind=head.kind, embed_dim=dim, model=model, pretrained=None)
    return save_prompt(path, head, meta)
