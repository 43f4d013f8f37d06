"""Embedding collections in the exact published layouts, generated for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)


def clip_retrieval_folder(root: Path, rows: list[int], dim: int = 32) -> Path:
    """clip-retrieval inference output: img_emb/img_emb_{i}.npy + metadata/metadata_{i}.parquet
    (image_path, caption, and the flattened .json fields url, key)."""
    (root / "img_emb").mkdir(parents=True)
    (root / "metadata").mkdir()
    for i, n in enumerate(rows):
        np.save(root / "img_emb" / f"img_emb_{i}.npy", unit_rows(n, dim, seed=i))
        keys = [f"{i:05d}{j:04d}" for j in range(n)]
        pd.DataFrame(
            {
                "image_path": [f"/data/{i:05d}/{k}.jpg" for k in keys],
                "caption": [f"=caption {k}" for k in keys],
                "url": [f"https://example.com/{k}.jpg" for k in keys],
                "key": keys,
            }
        ).to_parquet(root / "metadata" / f"metadata_{i}.parquet")
    return root


def datacomp_folder(root: Path, rows: list[int]) -> Path:
    """DataComp shards: {i:08d}.npz (b32_img/b32_txt 512-d, l14_img/l14_txt 768-d, float16)
    beside {i:08d}.parquet (uid, url, text, sha256, ...)."""
    root.mkdir(parents=True)
    for i, n in enumerate(rows):
        stem = f"{i:08d}"
        np.savez(
            root / f"{stem}.npz",
            b32_img=unit_rows(n, 512, i),
            b32_txt=unit_rows(n, 512, i + 100),
            l14_img=unit_rows(n, 768, i + 200),
            l14_txt=unit_rows(n, 768, i + 300),
        )
        uids = [f"{i:08x}{j:024x}" for j in range(n)]
        pd.DataFrame(
            {
                "uid": uids,
                "url": [f"https://example.com/{u}.jpg" for u in uids],
                "text": [f"text {u}" for u in uids],
                "original_width": [640] * n,
                "original_height": [480] * n,
                "clip_b32_similarity_score": np.zeros(n, np.float32),
                "clip_l14_similarity_score": np.zeros(n, np.float32),
                "sha256": ["0" * 64] * n,
            }
        ).to_parquet(root / f"{stem}.parquet")
    return root
