"""The boxes a scoring run found, read back from its ``scores/*.parquet``.

A detector head named ``faces`` (detector CenterFace, noun ``face``) stores per image
``faces_n``, ``face_bboxes`` (list of ``[x0, y0, x1, y1]`` normalised to the decoded image) and
``face_scores``; the release and the boxes parquet read them here, so nothing is detected twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from q16.errors import Q16Error
from q16.outdir import FINGERPRINT_FILE, SCORES_DIR, SUMMARY_FILE

BOX_SUFFIX = "_bboxes"


@dataclass(frozen=True)
class RunBoxes:
    """Where one detector head's boxes are in a run's parquet, and how its images were decoded."""

    out_dir: Path
    head: str
    column: str
    exif_transpose: bool
    max_pixels: int | None
    max_bytes: int | None

    def shards(self) -> list[Path]:
        return sorted((self.out_dir / SCORES_DIR).glob("*.parquet"))

    def read(self, shard: Path, extra: tuple[str, ...] = ()) -> pa.Table:
        """``key``, ``shard``, ``source``, ``file_name``, the box column (and ``extra``)."""
        names = pq.read_schema(shard).names
        wanted = ["key", "shard", "source", "file_name", self.column]
        wanted += [c for c in extra if c in names and c not in wanted]
        return pq.read_table(shard, columns=wanted)


def run_boxes(out_dir: Path, head: str = "faces") -> RunBoxes:
    """The boxes of ``head`` in the scored run at ``out_dir``; a Q16Error if there are none."""
    summary_path = out_dir / SUMMARY_FILE
    if not summary_path.is_file():
        raise Q16Error(f"{out_dir} has no {SUMMARY_FILE}: score it with infer.py first")
    summary = json.loads(summary_path.read_text())
    heads = {h.get("name"): h for h in summary.get("heads") or [] if isinstance(h, dict)}
    entry = heads.get(head)
    if entry is None or not entry.get("detector"):
        found = [n for n, h in heads.items() if h.get("detector")]
        hint = (
            f"its detector heads: {', '.join(map(str, found))}"
            if found
            else "score it with heads=[{name: q16, prompt: paper}, "
            "{name: faces, detector: centerface}]"
        )
        raise Q16Error(f"{out_dir} has no detector head {head!r}; {hint}")
    fingerprint = {}
    if (out_dir / FINGERPRINT_FILE).is_file():
        fingerprint = json.loads((out_dir / FINGERPRINT_FILE).read_text())
    return RunBoxes(
        out_dir=out_dir,
        head=head,
        column=str(entry["columns"]["boxes"]),
        exif_transpose=bool(fingerprint.get("exif_transpose", False)),
        max_pixels=fingerprint.get("max_pixels"),
        max_bytes=fingerprint.get("max_bytes"),
    )


def boxes_by_key(table: pa.Table, column: str) -> dict[str, list[list[float]]]:
    """key -> boxes of one shard's rows (an image without boxes maps to ``[]``)."""
    keys = table["key"].to_pylist()
    boxes = table[column].to_pylist()
    return {k: [list(map(float, b)) for b in (v or [])] for k, v in zip(keys, boxes, strict=True)}


def write_boxes_parquet(boxes: RunBoxes, path: Path) -> int:
    """One row per scored image: ``key``, ``shard``, ``url`` and ``uid`` where the run kept
    them (``data.meta_columns=[url, uid]``), and ``face_bboxes`` (list of ``[x0, y0, x1, y1]``
    floats, ``[]`` when none): img2dataset's ``bbox_col="face_bboxes"`` and DataComp's
    resharder (``uid``, ``face_bboxes``) read it as it is. Returns the rows written."""
    from q16.fileio import atomic_path

    tables = []
    for shard in boxes.shards():
        table = boxes.read(shard, extra=("meta_url", "meta_uid", "meta_caption"))
        columns = {"key": table["key"], "shard": table["shard"]}
        for stored, name in (("meta_url", "url"), ("meta_uid", "uid"), ("meta_caption", "caption")):
            if stored in table.column_names:
                columns[name] = table[stored]
        found = [[list(map(float, b)) for b in (v or [])] for v in table[boxes.column].to_pylist()]
        columns["face_bboxes"] = pa.array(found, pa.list_(pa.list_(pa.float64())))
        tables.append(pa.table(columns))
    if not tables:
        raise Q16Error(f"{boxes.out_dir} has no scored shards")
    merged = pa.concat_tables(tables, promote_options="default")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(merged, tmp)
    return merged.num_rows
