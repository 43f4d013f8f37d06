"""A face-blurred copy of a scored dataset, as WebDataset shards, from the run's own boxes.

One output tar per scored shard (``DEST/<shard>.tar``, written to a hidden file and renamed, so
a stopped release resumes with the shards it has not finished). Tar inputs keep their member
names, order and bytes; only the scored image member of a sample with boxes is replaced by its
blurred copy, re-encoded in its own format (JPEG and WEBP at quality 95), its metadata dropped
except the EXIF orientation when the run did not apply it. Folder inputs become shards whose
members are ``<path without extension>.<ext>`` plus the image's sidecars (same stem), byte for
byte. A sample whose image the run did not score (undecodable, refused), and an image member
beside the scored one, cannot have had faces looked for: left out unless ``keep_unscored``
(then shipped unblurred), and listed. Tars are read by the scorer's reader, and must still be
the ones scored (``resume.shard_stamp``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from q16.errors import Q16Error
from q16.fileio import atomic_path, atomic_write_text
from q16.imagefiles import IMAGE_EXTENSIONS, other_image_members
from q16.imagefiles import split_member_name as split_name
from q16.imageload import DEFAULT_MAX_BYTES, ImageLoadError, load_rgb
from q16.inference.resume import shard_stamp
from q16.outdir import SHARD_STAMP_KEY
from q16.privacy.blur import blur_boxes
from q16.privacy.boxes import RunBoxes, boxes_by_key, run_boxes
from q16.privacy.members import scored_member
from q16.sources.base import ErrorLog, Shard
from q16.sources.tars import tar_members
from q16.spreadsheet import neutralise

log = logging.getLogger(__name__)

RELEASE_FILE = "release.json"
OMITTED_FILE = "omitted.csv"
STATE_DIR = "_q16"
"""``DEST/_q16/<shard>.json``: one shard's counts, written before its tar (resume sums them)."""
QUALITY = 95
COUNTS = ("images_blurred", "boxes_blurred", "images_copied", "samples_omitted", "members_omitted")
UNSCORED_MEMBER = "second image member, not scored by the run (faces never looked for)"


@dataclass
class ReleaseCounts:
    shards_written: int = 0
    shards_already_done: int = 0
    images_blurred: int = 0
    boxes_blurred: int = 0
    images_copied: int = 0
    samples_omitted: int = 0
    members_omitted: int = 0
    omitted: list[tuple[str, str, str]] = field(default_factory=list)


def write_release(
    out_dir: Path, dest: Path, head: str = "faces", keep_unscored: bool = False
) -> ReleaseCounts:
    """Write (or finish) the blurred release of the run at ``out_dir`` into ``dest``."""
    boxes = run_boxes(out_dir, head)
    dest = dest.expanduser()
    if dest.resolve() == out_dir.resolve() or out_dir.resolve() in dest.resolve().parents:
        raise Q16Error(f"the release goes outside the run's folder, not into {dest}")
    identity = {"run": str(out_dir.resolve()), "head": head, "keep_unscored": keep_unscored}
    marker = dest / RELEASE_FILE
    if marker.is_file():
        before = _read_marker(marker)
        if before != identity:
            raise Q16Error(f"{dest} holds another release ({before}); pass a new folder")
    elif dest.exists() and any(dest.iterdir()):
        raise Q16Error(f"{dest} is not empty and holds no q16 release; pass a new folder")
    dest.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, json.dumps({"identity": identity}, indent=2) + "\n")
    counts = ReleaseCounts()
    (dest / STATE_DIR).mkdir(exist_ok=True)
    for shard in boxes.shards():
        target = dest / f"{shard.stem}.tar"
        state = dest / STATE_DIR / f"{shard.stem}.json"
        table = boxes.read(shard)
        sources = sorted(set(table["source"].to_pylist()))
        scored_as = _checked_input(shard, sources)
        if target.is_file() and _state_stamp(state) == scored_as:
            counts.shards_already_done += 1
            continue
        mine = ReleaseCounts()
        found = boxes_by_key(table, boxes.column)
        try:
            with atomic_path(target) as tmp:
                with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as out:
                    if len(sources) == 1 and tarfile.is_tarfile(sources[0]):
                        _copy_tar(Path(sources[0]), out, found, boxes, keep_unscored, mine)
                    else:
                        keys, paths = table["key"].to_pylist(), table["source"].to_pylist()
                        _pack_folder(dict(zip(keys, paths, strict=True)), out, found, boxes, mine)
                atomic_write_text(state, json.dumps({**asdict(mine), "stamp": scored_as}) + "\n")
        except OSError as err:
            if err.filename is None or Path(err.filename).resolve().is_relative_to(dest.resolve()):
                raise  # the release's own files: cli.main says "cannot write"
            raise Q16Error(
                f"cannot read input {err.filename}: {err.strerror or err} "
                f"(moved or changed since scoring? shard {shard.stem})"
            ) from None
        counts.shards_written += 1
    for state in sorted((dest / STATE_DIR).glob("*.json")):  # this call's shards and earlier ones
        done = json.loads(state.read_text())
        for name in COUNTS:
            setattr(counts, name, getattr(counts, name) + int(done.get(name, 0)))
        counts.omitted += [tuple(row) for row in done.get("omitted", [])]
    _write_omitted(dest, counts.omitted)
    summary = {k: v for k, v in asdict(counts).items() if k != "omitted"}
    atomic_write_text(marker, json.dumps({"identity": identity, **summary}, indent=2) + "\n")
    log.info("release %s: %s", dest, summary)
    return counts


def _read_marker(marker: Path) -> object:
    """The identity in an earlier ``release.json`` (a Q16Error if it is not q16's JSON)."""
    try:
        before = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise Q16Error(
            f"{marker} cannot be read as a q16 release ({type(err).__name__}); "
            "pass a new folder, or delete it to start the release again"
        ) from None
    if not isinstance(before, dict):
        raise Q16Error(f"{marker} is no q16 release (not a JSON object); pass a new folder")
    return before.get("identity")


def _state_stamp(state: Path) -> str | None:
    """The input stamp a released shard was made from (None: no finished state)."""
    try:
        done = json.loads(state.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return str(done.get("stamp")) if isinstance(done, dict) and "stamp" in done else None


def _checked_input(shard: Path, sources: list[str]) -> str:
    """The input stamp recorded when ``shard`` was scored, after checking that the input is
    still there and, for a tar, still the one scored (size and mtime: ``resume.shard_stamp``);
    boxes from other images would leave the new images' faces unblurred."""
    for source in sources:
        if not Path(source).exists():
            raise Q16Error(
                f"input {source} not found (moved or deleted since scoring?); "
                "put it back where the run read it"
            )
    recorded = (pq.read_schema(shard).metadata or {}).get(SHARD_STAMP_KEY, b"").decode()
    if len(sources) == 1 and Path(sources[0]).is_file() and recorded:
        now = shard_stamp(Shard(shard.stem, sources[0]))
        if now != recorded:
            raise Q16Error(
                f"input {sources[0]} changed since it was scored (size or mtime); "
                "score it again (same infer.out_dir resumes) before releasing"
            )
    return recorded


def _copy_tar(
    path: Path,
    out: tarfile.TarFile,
    found: dict[str, list[list[float]]],
    boxes: RunBoxes,
    keep_unscored: bool,
    counts: ReleaseCounts,
) -> None:
    """The scorer's reading of the tar, copied; a second image member beside the scored one
    was never looked at for faces, so it is left out (listed) unless ``keep_unscored``."""
    errors = ErrorLog(path.name)
    seen: set[str] = set()
    for sample in tar_members(str(path), errors, boxes.max_bytes or DEFAULT_MAX_BYTES):
        key, chosen, repeat = sample.key, scored_member(sample), sample.key in seen
        seen.add(key)
        if sample.problems or (chosen is not None and (repeat or key not in found)):
            reason = "; ".join(sample.problems) or (
                "key seen before in this tar: not scored"
                if repeat
                else "image not scored by the run"
            )
            counts.omitted.append((path.name, key, reason))
            counts.samples_omitted += 1
            if not keep_unscored:
                continue
            chosen = None
        image = chosen[0] if chosen is not None else None
        scored_ext = split_name(image.name)[1] if image is not None else None  # type: ignore[index]
        others = set(other_image_members(sample.extensions(), scored_ext))
        for info, data in sample.members:
            if image is not None and split_name(info.name)[1] in others:  # type: ignore[index]
                counts.omitted.append((path.name, key, f"{info.name}: {UNSCORED_MEMBER}"))
                counts.members_omitted += 1
                if not keep_unscored:
                    continue
            if info is image and found.get(key):
                data = _blurred(data, found[key], boxes, key, counts)
            _add(out, info, data)
    counts.omitted += [(path.name, r["key"] or "", r["reason"]) for r in errors.records]


def _pack_folder(
    files: dict[str, str],
    out: tarfile.TarFile,
    found: dict[str, list[list[float]]],
    boxes: RunBoxes,
    counts: ReleaseCounts,
) -> None:
    listings: dict[Path, list[Path]] = {}
    for key, source in files.items():
        path = Path(source)
        if path.parent not in listings:  # listed, not globbed: a name may hold [ * ?
            listings[path.parent] = sorted(path.parent.iterdir())
        stem = key.rsplit(".", 1)[0].replace(".", "_")
        data = path.read_bytes()
        if found.get(key):
            data = _blurred(data, found[key], boxes, key, counts)
        else:
            counts.images_copied += 1
        _add(out, _info(f"{stem}.{path.suffix[1:].lower()}", path), data)
        for sidecar in listings[path.parent]:
            if (
                sidecar.stem == path.stem
                and sidecar != path
                and sidecar.suffix[1:].lower() not in IMAGE_EXTENSIONS
                and sidecar.is_file()
                and not sidecar.is_symlink()
            ):
                _add(out, _info(f"{stem}{sidecar.suffix}", sidecar), sidecar.read_bytes())


def _blurred(
    data: bytes, found: list[list[float]], boxes: RunBoxes, key: str, counts: ReleaseCounts
) -> bytes:
    """The image bytes with ``found`` blurred, in the original's format."""
    limit = boxes.max_bytes or DEFAULT_MAX_BYTES
    try:
        if len(data) > limit:
            raise ImageLoadError(f"{len(data)} bytes exceeds {limit}")
        original = Image.open(io.BytesIO(data))
        kind, exif = original.format or "PNG", original.getexif()
        pixels = np.asarray(
            load_rgb(data, max_pixels=boxes.max_pixels, exif_transpose=boxes.exif_transpose)
        )
    except (ImageLoadError, OSError, ValueError) as err:  # scored, so this is rare: a change?
        raise Q16Error(f"{key}: the image the run scored no longer decodes ({err})") from None
    blurred = Image.fromarray(blur_boxes(pixels, found))
    keep = Image.Exif()
    orientation = exif.get(0x0112)
    if orientation and not boxes.exif_transpose:  # the boxes are in the stored frame
        keep[0x0112] = orientation
    buffer = io.BytesIO()
    options: dict[str, object] = {"exif": keep.tobytes()} if len(keep) else {}
    if kind in ("JPEG", "MPO"):
        blurred.save(buffer, format="JPEG", quality=QUALITY, **options)
    elif kind == "WEBP":
        blurred.save(buffer, format="WEBP", quality=QUALITY, **options)
    else:
        blurred.save(buffer, format=kind if kind in ("PNG", "BMP", "TIFF", "GIF") else "PNG")
    counts.images_blurred += 1
    counts.boxes_blurred += len(found)
    return buffer.getvalue()


def _info(name: str, path: Path) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = int(path.stat().st_mtime)
    info.mode = 0o644
    return info


def _add(out: tarfile.TarFile, info: tarfile.TarInfo, data: bytes) -> None:
    copy = tarfile.TarInfo(info.name)
    copy.mtime, copy.mode, copy.uid, copy.gid = info.mtime, info.mode, info.uid, info.gid
    copy.uname, copy.gname, copy.size = info.uname, info.gname, len(data)
    out.addfile(copy, io.BytesIO(data))


def _write_omitted(dest: Path, rows: list[tuple[str, str, str]]) -> None:
    with atomic_path(dest / OMITTED_FILE) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["shard", "key", "reason"])
        writer.writerows([[neutralise(str(c)) for c in row] for row in rows])
