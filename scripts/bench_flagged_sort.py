"""flagged.csv written from N flagged rows: sorted in memory versus spilled to disk and merged.

    python scripts/bench_flagged_sort.py --rows 1000000 --spill-rows 50000

Rows are synthetic (random scores, 1000 per shard); both paths must write the same bytes.
Writes ``results/bench/flagged-sort-<rows>.json``.
"""

from __future__ import annotations

import argparse
import filecmp
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from q16.benchmarks import write_result
from q16.inference.collect import FLAGGED_SCHEMA
from q16.inference.flagged import flagged_sorter

REPO = Path(__file__).resolve().parents[1]

PER_SHARD = 1000


def shard_table(index: int, rng: np.random.Generator) -> pa.Table:
    n = PER_SHARD
    return pa.table(
        {"key": [f"{index:06d}-{j:04d}" for j in range(n)], "shard": [f"s{index:06d}"] * n,
         "source": ["/data/x.tar"] * n, "file_name": ["f.jpg"] * n, "class_id": [1] * n,
         "class_name": ["c"] * n, "p_inappropriate": pa.array(rng.random(n, dtype=np.float32))},
        schema=FLAGGED_SCHEMA,
    )  # fmt: skip


def timed_write(rows: int, max_rows: int, out: Path) -> tuple[float, int]:
    rng = np.random.default_rng(0)  # the same rows for both paths
    start = time.perf_counter()
    with flagged_sorter(FLAGGED_SCHEMA, out.parent, max_rows) as sorter:
        for index in range(rows // PER_SHARD):
            sorter.add(shard_table(index, rng))
        sorter.write_csv(out)
        runs = len(sorter.runs)
    return time.perf_counter() - start, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--spill-rows", type=int, default=50_000)
    parser.add_argument("--out-dir", type=Path, default=REPO / "results" / "bench")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="q16-sort-"))
    memory_s, _ = timed_write(args.rows, args.rows + 1, work / "memory.csv")
    disk_s, runs = timed_write(args.rows, args.spill_rows, work / "disk.csv")
    same = filecmp.cmp(work / "memory.csv", work / "disk.csv", shallow=False)
    result = {
        "rows": args.rows,
        "in_memory_s": round(memory_s, 2),
        "spilled_s": round(disk_s, 2),
        "spill_rows": args.spill_rows,
        "spilled_runs": runs,
        "same_bytes": same,
        "includes": "building the synthetic tables, sorting, writing flagged.csv",
    }
    path = write_result(args.out_dir, f"flagged-sort-{args.rows}.json", result)
    print(result, f"wrote {path}")
    for file in work.iterdir():
        file.unlink()
    work.rmdir()


if __name__ == "__main__":
    main()
