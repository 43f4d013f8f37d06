"""A face-blurred copy of a scored dataset, as WebDataset shards, from the run's own boxes.

One output tar per scored shard (``DEST/<shard>.tar``, written to a hidden file and renamed, so
a stopped release resumes with the shards it has not finished). Tar inputs keep their member
names, order and bytes; only the scored image member of a sample with boxes is replaced by its
blurred copy, re-encoded in its own format (JPEG and WEBP at quality 95), its metadata dropped
except the EXIF orientation when the run did not apply it. Folder inputs become shards whose
members are ``<path without extension>.<ext>`` plus the image's sidecars (same stem), byte for
byte. A sample whose image the run did not score (undecodable, refused) cannot have had its
faces looked for: it is left out unless ``keep_unscored``, and counted.
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
from PIL import Image

from q16.errors import Q16Error
from q16.fileio import atomic_path, atomic_write_text
from q16.imagefiles import IMAGE_EXTENSIONS
from q16.imageload import DEFAULT_MAX_BYTES, ImageLoadError, load_rgb
from q16.privacy.blur import blur_boxes
from q16.privacy.boxes import RunBoxes, boxes_by_key, run_boxes
from q16.privacy.members import scored_member, tar_samples
from q16.spreadsheet import neutralise

log = logging.getLogger(__name__)

RELEASE_FILE = "release.json"
OMITTED_FILE = "omitted.csv"
STATE_DIR = "_q16"
"""``DEST/_q16/<shard>.json``: one shard's counts, written before its tar (resume sums them)."""
QUALITY = 95
COUNTS = ("images_blurred", "boxes_blurred", "images_copied", "samples_omitted")


@dataclass
class ReleaseCounts:
    shards_written: int = 0
    shards_already_done: int = 0
    images_blurred: int = 0
    boxes_blurred: int = 0
    images_copied: int = 0
    samples_omitted: int = 0
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
        before = json.loads(marker.read_text()).get("identity")
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
        if target.is_file() and state.is_file():
            counts.shards_already_done += 1
            continue
        mine = ReleaseCounts()
        table = boxes.read(shard)
        found = boxes_by_key(table, boxes.column)
        sources = sorted(set(table["source"].to_pylist()))
        with atomic_path(target) as tmp:
            with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as out:
                if len(sources) == 1 and tarfile.is_tarfile(sources[0]):
                    _copy_tar(Path(sources[0]), out, found, boxes, keep_unscored, mine)
                else:
                    keys, paths = table["key"].to_pylist(), table["source"].to_pylist()
                    _pack_folder(dict(zip(keys, paths, strict=True)), out, found, boxes, mine)
            atomic_write_text(state, json.dumps(asdict(mine)) + "\n")
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


def _copy_tar(
    path: Path,
    out: tarfile.TarFile,
    found: dict[str, list[list[float]]],
    boxes: RunBoxes,
    keep_unscored: bool,
    counts: ReleaseCounts,
) -> None:
    for key, members in tar_samples(path, boxes.max_bytes or DEFAULT_MAX_BYTES):
        scored = scored_member(members)
        image = scored[0] if scored is not None else None
        if image is not None and key not in found:
            counts.omitted.append((path.name, key, "image not scored by the run"))
            counts.samples_omitted += 1
            if not keep_unscored:
                continue
        for info, data in members:
            if info is image and found.get(key):
                data = _blurred(data, found[key], boxes, key, counts)
            _add(out, info, data)


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
