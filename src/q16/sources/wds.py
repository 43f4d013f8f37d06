"""WebDataset tar shards as an inference input (``data=imagenet``), and a shard writer.

Reads the usual ImageNet shard layout (``<key>.jpg|.jpeg|.JPEG|.png|.webp`` with optional
``.cls`` / ``.json`` / ``.txt``) and img2dataset's (9-digit keys, ``.jpg`` + ``.txt`` caption +
``.json``). A ``.txt`` member is taken as the class name only when a ``.cls`` is present too;
otherwise it is a caption and ignored. Tars are read by ``q16.sources.tars`` (every member
accounted for, none read beyond ``max_bytes``); a sample whose members cannot be parsed is
recorded, never scored with half its metadata, and never stops the shard.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import webdataset as wds
from braceexpand import braceexpand

from q16.errors import Q16Error, check_bool, check_int
from q16.fileio import safe_file_name
from q16.imagefiles import IMAGE_EXTENSIONS
from q16.imageload import DEFAULT_MAX_BYTES
from q16.sources.base import INT64_MAX, ErrorLog, RawSample, Shard, is_remote
from q16.sources.classnames import ClassNames, load_class_names
from q16.sources.tars import PROBLEMS, tar_samples

log = logging.getLogger(__name__)

FILE_NAME_FIELDS = ("file_name", "filename", "original_file_name", "path")
CLASS_NAME_FIELDS = ("class_name", "label_name", "name")
CLASS_ID_FIELDS = ("class_id", "label", "cls")
SYNSET_FIELDS = ("synset", "wnid")
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def expand_shards(spec: str | Sequence[str]) -> list[str]:
    """A directory (its ``*.tar``, sorted), a glob, a brace pattern, or a list of those.

    A directory or a glob selects tar files only (``.tar``, ``.tar.gz``, ``.tgz``): the
    sidecar files img2dataset writes beside its shards (``.parquet``, ``_stats.json``) are
    not inputs. A file named explicitly (a path, a brace pattern, a list) is taken as given.

    Raises:
        Q16Error: nothing matches, or a listed local shard does not exist.
    """
    specs = [spec] if isinstance(spec, str | os.PathLike) else list(spec)
    urls: list[str] = []
    for item in map(str, specs):
        if is_remote(item):
            urls.extend(braceexpand(item))
            continue
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(str(p) for p in path.iterdir() if p.name.endswith(TAR_SUFFIXES))
            if not found:
                raise Q16Error(f"data.shards={item!r}: directory holds no .tar shards")
            urls.extend(found)
            continue
        for pattern in braceexpand(str(path)):
            if glob.has_magic(pattern):
                urls.extend(sorted(p for p in glob.glob(pattern) if p.endswith(TAR_SUFFIXES)))
            else:
                urls.append(pattern)
    urls = list(dict.fromkeys(urls))
    if not urls:
        raise Q16Error(f"data.shards={spec!r} matches no shard files")
    missing = [u for u in urls if not is_remote(u) and not Path(u).is_file()]
    if missing:
        raise Q16Error(
            f"{len(missing)} of {len(urls)} shards do not exist (first: {missing[0]}); "
            "check data.shards (quote brace patterns: 'data.shards=\"/d/x-{000..009}.tar\"')"
        )
    return urls


def shard_names(urls: Sequence[str]) -> list[str]:
    """File names without ``.tar``; path-qualified only where two shards share a name."""

    def strip(name: str) -> str:
        for suffix in TAR_SUFFIXES:
            if name.endswith(suffix):
                return name[: -len(suffix)]
        return name

    names = [strip(os.path.basename(u.rstrip("/"))) for u in urls]
    if len(set(names)) < len(names):
        common = os.path.commonpath([os.path.dirname(u) for u in urls]) if urls else ""
        names = [strip(os.path.relpath(u, common) if common else u) for u in urls]
    names = [safe_file_name(n, fallback="shard") for n in names]
    # sanitising or suffix stripping can still collide (``a b.tar``/``a_b.tar``,
    # ``x.tar``/``x.tgz``; ``A.tar``/``a.tar`` on case-insensitive filesystems)
    counts = Counter(n.lower() for n in names)
    return [
        f"{n}-{hashlib.sha1(u.encode()).hexdigest()[:8]}" if counts[n.lower()] > 1 else n
        for n, u in zip(names, urls, strict=True)
    ]


@dataclass
class WebDatasetShards:
    """Tar shards to score.

    Args:
        shards: directory, glob, brace pattern (``train-{000000..001281}.tar``) or list.
        name: label for reports.
        class_names: optional JSON/TXT class list mapping ``.cls`` indices to names.
        max_bytes: larger tar members are not read (recorded), judged from the tar header.
        exif_transpose: rotate by EXIF orientation before scoring (off: the reference recipe).
    """

    shards: Any
    name: str = "imagenet"
    class_names: str | None = None
    max_bytes: int = DEFAULT_MAX_BYTES
    exif_transpose: bool = False
    _classes: ClassNames | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.max_bytes = int(check_int("data.max_bytes", self.max_bytes, 1) or 0)
        self.exif_transpose = check_bool("data.exif_transpose", self.exif_transpose)

    def list_shards(self) -> list[Shard]:
        urls = expand_shards(self.shards)
        self.classes()  # a bad data.class_names fails here, in the main process
        return [Shard(n, u) for n, u in zip(shard_names(urls), urls, strict=True)]

    def classes(self) -> ClassNames:
        if self._classes is None:
            self._classes = load_class_names(self.class_names)
        return self._classes

    def iter_samples(self, shard: Shard, errors: ErrorLog) -> Iterator[RawSample]:
        classes = self.classes()
        for sample in tar_samples(shard.source, errors, self.max_bytes):
            try:
                yield to_raw_sample(sample, shard, classes)
            except Exception as err:  # any member that cannot be parsed: record the sample
                reason = f"unreadable sample: {type(err).__name__}: {str(err)[:200]}"
                yield RawSample(key=str(sample["__key__"]), source=shard.source, error=reason)


def to_raw_sample(sample: dict[str, Any], shard: Shard, classes: ClassNames) -> RawSample:
    """One sample's members parsed; raises on a member it cannot parse (the caller records)."""
    key = str(sample["__key__"])
    members = {k.lower(): k for k in sample if not k.startswith("__")}
    image_ext = next((members[e] for e in IMAGE_EXTENSIONS if e in members), None)
    meta = _json_member(sample.get(members.get("json", ""), b""))
    raw = RawSample(key=key, source=str(sample.get("__url__", shard.source)))
    raw.file_name = next((str(meta[f]) for f in FILE_NAME_FIELDS if meta.get(f)), None)
    problems = sample.get(PROBLEMS) or []
    if problems:
        raw.error = "; ".join(problems)
    elif image_ext is None:
        raw.error = f"no image member (has: {', '.join(sorted(members)) or 'nothing'})"
    else:
        raw.data = sample[image_ext]
        raw.file_name = raw.file_name or f"{os.path.basename(key)}.{image_ext}"
    _fill_class(raw, sample, members, meta, classes)
    return raw


def _json_member(data: bytes) -> dict[str, Any]:
    """A ``.json`` member as a dict (``{}`` if it is none); any other failure propagates."""
    if not data:
        return {}
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return {}
    return obj if isinstance(obj, dict) else {}


def _class_id(value: object) -> int | None:
    """A class id from ``.cls`` text or a JSON field; out of int64 range raises ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    if isinstance(value, str):
        if not value.lstrip("-").isdigit():
            return None
        value = int(value)
    if value == -1:  # the usual "no label"
        return None
    if not 0 <= value <= INT64_MAX:
        raise ValueError(f"class id {value} out of range (0..{INT64_MAX})")
    return value


def _fill_class(
    raw: RawSample,
    sample: dict[str, Any],
    members: dict[str, str],
    meta: dict[str, Any],
    classes: ClassNames,
) -> None:
    cls_text = _text(sample.get(members.get("cls", ""), b""))
    class_id = _class_id(cls_text) if cls_text is not None else None
    if class_id is None:
        found = (_class_id(meta.get(f)) for f in CLASS_ID_FIELDS if f in meta)
        class_id = next((c for c in found if c is not None), None)
    raw.class_id = -1 if class_id is None else class_id
    info = classes.get(raw.class_id) if raw.class_id >= 0 else None
    raw.synset = (info.synset if info else None) or next(
        (str(meta[f]) for f in SYNSET_FIELDS if meta.get(f)), None
    )
    name = (
        info.name if info else next((str(meta[f]) for f in CLASS_NAME_FIELDS if meta.get(f)), None)
    )
    if name is None and cls_text is not None:
        name = _text(sample.get(members.get("txt", ""), b""))
    raw.class_name = name or raw.synset or None


def _text(data: bytes | str) -> str | None:
    if isinstance(data, str):
        return data.strip() or None
    try:
        return data.decode("utf-8").strip() or None
    except UnicodeDecodeError:
        return None


def write_shards(
    samples: Iterable[dict[str, Any]], pattern: str, maxcount: int = 1000
) -> list[str]:
    """Write webdataset samples (``{"__key__": ..., "jpg": bytes, ...}``) into numbered shards.

    ``pattern`` is a printf pattern such as ``/out/train-%06d.tar``.
    """
    Path(pattern).parent.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    with wds.ShardWriter(pattern, maxcount=maxcount, verbose=0) as sink:
        for sample in samples:
            sink.write(sample)
            if sink.fname and (not written or written[-1] != sink.fname):
                written.append(sink.fname)
    return written


def synthetic_images(
    n: int, seed: int = 0, size: tuple[int, int] = (96, 80), n_classes: int = 4
) -> Iterator[dict[str, Any]]:
    """JPEG samples in the ImageNet shard layout, for tests and benchmarks (no downloads)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        cls = int(rng.integers(n_classes))
        base = np.stack([xx * (cls + 1) % 256, yy * 2 % 256, (xx + yy + 40 * cls) % 256], -1)
        noise = rng.integers(0, 40, size=(h, w, 3))
        pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        synset = f"n{cls:08d}"
        name = f"{synset}_{i:06d}.JPEG"
        yield {
            "__key__": f"{synset}_{i:06d}",
            "jpg": buffer.getvalue(),
            "cls": str(cls).encode(),
            "json": json.dumps({"file_name": name, "synset": synset}).encode(),
        }
