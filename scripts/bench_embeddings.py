"""Scoring precomputed embeddings: raw read rate versus q16 end to end, and peak memory.

    python scripts/bench_embeddings.py --rows 1000000 --files 10

Synthetic unit-length float16 768-d embeddings in clip-retrieval's layout (img_emb/ + metadata/
with key, url, caption), scored with ``model=ViT-L-14`` and the paper's prompts (no weights
are read). (a) reading the same arrays (mmap, copied to memory); (b) ``infer.py
data=clip_retrieval`` with one head, carrying url and caption; peak RSS of (b) with all files
and with one file of the same size. Writes ``results/bench/embeddings-cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from bench_infer import REPO, write_result  # scripts/ is on sys.path when run as a script

DIM = 768
CHILD = """
import atexit, resource, runpy, sys
atexit.register(lambda: print("PEAK_RSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
sys.argv = ["infer.py", *sys.argv[1:]]
runpy.run_path("infer.py", run_name="__main__")
"""


def make_folder(root: Path, files: int, per_file: int) -> None:
    (root / "img_emb").mkdir(parents=True)
    (root / "metadata").mkdir()
    rng = np.random.default_rng(0)
    for i in range(files):
        x = rng.standard_normal((per_file, DIM), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        np.save(root / "img_emb" / f"img_emb_{i}.npy", x.astype(np.float16))
        keys = [f"{i:05d}{j:06d}" for j in range(per_file)]
        pd.DataFrame(
            {"key": keys, "url": [f"https://example.com/{k}.jpg" for k in keys],
             "caption": [f"caption {k}" for k in keys]}
        ).to_parquet(root / "metadata" / f"metadata_{i}.parquet")  # fmt: skip


def raw_read(root: Path) -> float:
    """Embeddings per second: every array read and made a float16 array in memory."""
    start, rows = time.perf_counter(), 0
    for npy in sorted((root / "img_emb").glob("*.npy")):
        rows += len(np.array(np.load(npy, mmap_mode="r")))
    return rows / (time.perf_counter() - start)


def q16_run(root: Path, out: Path) -> dict[str, float]:
    args = [
        "data=clip_retrieval", f"data.path={root}", "data.meta_columns=[url,caption]",
        "model=ViT-L-14", f"infer.out_dir={out}", "infer.progress=false",
        "infer.batch_size=4096", "fabric.accelerator=cpu",
        f"hydra.run.dir={out.parent / ('hydra-' + out.name)}",
    ]  # fmt: skip
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-c", CHILD, *args], cwd=REPO, capture_output=True, text=True, check=True
    )
    wall = time.perf_counter() - start
    summary = json.loads((out / "summary.json").read_text())
    rss_kb = int(run.stdout.split("PEAK_RSS_KB")[-1].split()[0])
    return {
        "embeddings_per_s_loop": summary["loop_images_per_s"],
        "embeddings_per_s_wall": round(summary["images_scored"] / wall, 1),
        "process_wall_s": round(wall, 2),
        "images_scored": summary["images_scored"],
        "peak_rss_mb_main_process": round(rss_kb / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--out-dir", type=Path, default=REPO / "results" / "bench")
    args = parser.parse_args()
    per_file = args.rows // args.files
    work = Path(tempfile.mkdtemp(prefix="q16-emb-"))
    make_folder(work / "many", args.files, per_file)
    make_folder(work / "one", 1, per_file)
    raw_read(work / "many")  # page cache warm, as in the figure
    raw = raw_read(work / "many")
    many = q16_run(work / "many", work / "out-many")
    one = q16_run(work / "one", work / "out-one")
    result = {
        "rows": per_file * args.files,
        "files": args.files,
        "layout": "clip-retrieval img_emb/*.npy float16 768-d + metadata/*.parquet",
        "a_raw_read_embeddings_per_s": round(raw, 1),
        "b_q16_one_head": many,
        "b_over_a_loop": round(many["embeddings_per_s_loop"] / raw, 4),
        "one_file_same_size": one,
        "peak_rss_ratio_files_vs_1": round(
            many["peak_rss_mb_main_process"] / one["peak_rss_mb_main_process"], 3
        ),
        "c_four_heads": "not measured: heads: is not implemented yet",
        "num_workers": "infer default (auto)",
    }
    path = write_result(args.out_dir, "embeddings-cpu.json", result)
    print(json.dumps(result, indent=2), f"wrote {path}")


if __name__ == "__main__":
    main()
