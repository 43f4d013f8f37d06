"""WebDataset tar shards as an inference input (``data=imagenet``, ``data=webdataset``).

Reads the ImageNet shard layout (``<key>.jpg|.jpeg|.JPEG|.png|.webp`` with optional ``.cls`` /
``.json`` / ``.txt``) and img2dataset's (9-digit keys, ``.jpg`` + ``.txt`` caption + ``.json``).
The class comes from ``.cls`` (with ``data.class_names``), a ``.txt`` is the class name only
beside a ``.cls``; ``.json`` keys fill the class id, class name, synset and file name only when
named in ``data.class_id_keys`` / ``class_name_keys`` / ``synset_keys`` / ``file_name_keys``
(``data=imagenet`` names the usual ones; ``data=webdataset`` none, so img2dataset's extra
columns ``label`` or ``name`` never become classes). ``data.meta_columns`` carries ``.json``
fields and the ``.txt`` into the scores (``q16.sources.sample_meta``); a ``.json`` that cannot
be read then is recorded (key null: the image is still scored, without its metadata).

Tars are read by ``q16.sources.tars`` (every member accounted for, none read beyond
``max_bytes``); a sample whose members cannot be parsed is recorded, never scored with half its
metadata, and never stops the shard. Counts img2dataset wrote beside the tars go to
``summary.json`` (``download_stats``, ``q16.sources.img2dataset``).
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import webdataset as wds

from q16.errors import check_bool, check_int
from q16.imagefiles import image_member, other_image_members
from q16.imageload import DEFAULT_MAX_BYTES
from q16.sources.base import INT64_MAX, ErrorLog, RawSample, Shard
from q16.sources.classnames import ClassNames, load_class_names
from q16.sources.img2dataset import download_stats, tar_stems
from q16.sources.sample_meta import json_keys, parse_json_object, sample_meta
from q16.sources.shardlist import TAR_SUFFIXES, expand_shards, shard_names
from q16.sources.tars import PROBLEMS, tar_samples

log = logging.getLogger(__name__)
__all__ = [
    "TAR_SUFFIXES",
    "JsonFields",
    "WebDatasetShards",
    "expand_shards",
    "shard_names",
    "synthetic_images",
    "to_raw_sample",
    "write_shards",
]

FILE_NAME_FIELDS = ("file_name", "filename", "original_file_name", "path")
CLASS_NAME_FIELDS = ("class_name", "label_name", "name")
CLASS_ID_FIELDS = ("class_id", "label", "cls")
SYNSET_FIELDS = ("synset", "wnid")


@dataclass(frozen=True)
class JsonFields:
    """Which ``.json`` keys fill which field (first non-empty wins), and the meta columns."""

    class_id: tuple[str, ...] = CLASS_ID_FIELDS
    class_name: tuple[str, ...] = CLASS_NAME_FIELDS
    synset: tuple[str, ...] = SYNSET_FIELDS
    file_name: tuple[str, ...] = FILE_NAME_FIELDS
    meta_columns: tuple[str, ...] = ()


@dataclass
class WebDatasetShards:
    """Tar shards to score.

    Args:
        shards: directory, glob, brace pattern (``train-{000000..001281}.tar``) or list.
        name: label for reports.
        class_names: optional JSON/TXT class list mapping ``.cls`` indices to names.
        max_bytes: larger tar members are not read (recorded), judged from the tar header.
        exif_transpose: rotate by EXIF orientation before scoring (off: the reference recipe).
        meta_columns: ``.json`` keys (and ``txt``) carried into the scores as ``meta_<name>``.
        class_id_keys, class_name_keys, synset_keys, file_name_keys: the ``.json`` keys that
            may fill these fields (null: none; the defaults are ``data=imagenet``'s).
    """

    shards: Any
    name: str = "imagenet"
    class_names: str | None = None
    max_bytes: int = DEFAULT_MAX_BYTES
    exif_transpose: bool = False
    meta_columns: Any = ()
    class_id_keys: Any = CLASS_ID_FIELDS
    class_name_keys: Any = CLASS_NAME_FIELDS
    synset_keys: Any = SYNSET_FIELDS
    file_name_keys: Any = FILE_NAME_FIELDS
    _classes: ClassNames | None = field(default=None, init=False, repr=False)
    _fields: JsonFields = field(default_factory=JsonFields, init=False, repr=False)

    def __post_init__(self) -> None:
        self.max_bytes = int(check_int("data.max_bytes", self.max_bytes, 1) or 0)
        self.exif_transpose = check_bool("data.exif_transpose", self.exif_transpose)
        self._fields = JsonFields(
            class_id=json_keys("data.class_id_keys", self.class_id_keys),
            class_name=json_keys("data.class_name_keys", self.class_name_keys),
            synset=json_keys("data.synset_keys", self.synset_keys),
            file_name=json_keys("data.file_name_keys", self.file_name_keys),
            meta_columns=json_keys("data.meta_columns", self.meta_columns),
        )

    def list_shards(self) -> list[Shard]:
        urls = expand_shards(self.shards)
        self.classes()  # a bad data.class_names fails here, in the main process
        return [Shard(n, u) for n, u in zip(shard_names(urls), urls, strict=True)]

    def download_stats(self, shards: Sequence[Shard]) -> dict[str, Any] | None:
        """What img2dataset's sidecar files say about these shards (None: there are none)."""
        return download_stats(tar_stems([s.source for s in shards]))

    def classes(self) -> ClassNames:
        if self._classes is None:
            self._classes = load_class_names(self.class_names)
        return self._classes

    def iter_samples(self, shard: Shard, errors: ErrorLog) -> Iterator[RawSample]:
        classes = self.classes()
        for sample in tar_samples(shard.source, errors, self.max_bytes):
            notes: list[tuple[str | None, str]] = []
            try:
                yield to_raw_sample(sample, shard, classes, self._fields, notes)
            except Exception as err:  # any member that cannot be parsed: record the sample
                reason = f"unreadable sample: {type(err).__name__}: {str(err)[:200]}"
                yield RawSample(key=str(sample["__key__"]), source=shard.source, error=reason)
            for note_key, note in notes:  # key null: about metadata, the image was scored
                errors.add(note_key, note)


def to_raw_sample(
    sample: dict[str, Any],
    shard: Shard,
    classes: ClassNames,
    fields: JsonFields | None = None,
    notes: list[tuple[str | None, str]] | None = None,
) -> RawSample:
    """One sample's members parsed; raises on a member it cannot parse (the caller records).

    ``notes`` receives (key, reason) records beside the sample: why requested metadata could
    not be read (key null: the image is still scored), and each image member not scored.
    """
    fields = fields or JsonFields()
    key = str(sample["__key__"])
    names = [k for k in sample if not k.startswith("__")]
    members = {k.lower(): k for k in names}  # non-image members (json, cls, txt) by lower case
    image_ext = image_member(names)
    record, problem = parse_json_object(sample.get(members.get("json", ""), b""))
    raw = RawSample(key=key, source=str(sample.get("__url__", shard.source)))
    raw.file_name = next((str(record[f]) for f in fields.file_name if record.get(f)), None)
    problems = sample.get(PROBLEMS) or []
    if problems:
        raw.error = "; ".join(problems)
    elif image_ext is None:
        raw.error = f"no image member (has: {', '.join(sorted(names)) or 'nothing'})"
    else:
        raw.data = sample[image_ext]
        raw.file_name = raw.file_name or f"{os.path.basename(key)}.{image_ext}"
        if notes is not None:
            notes.extend((key, reason) for reason in _other_images(key, names, image_ext))
    _fill_class(raw, sample, members, record, classes, fields)
    if fields.meta_columns:
        txt = sample.get(members["txt"]) if "txt" in members else None
        raw.meta = sample_meta(fields.meta_columns, record, txt)
        if problem and raw.error is None and notes is not None:
            notes.append((None, f"sample {key!r}: .json is {problem}; scored without its metadata"))
    return raw


def _other_images(key: str, names: list[str], scored: str) -> list[str]:
    """Why each image member beside the scored one was not scored (one record each, also for
    ``k.jpg`` beside ``k.JPG``: names that differ only in case are two members)."""
    base = os.path.basename(key)
    return [
        f"second image member {base}.{ext}: not scored ({base}.{scored} was: one image per "
        "key, the first of jpg, jpeg, png, webp, bmp, tif, tiff, gif)"
        for ext in other_image_members(names, scored)
    ]


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
    fields: JsonFields,
) -> None:
    cls_text = _text(sample.get(members.get("cls", ""), b""))
    class_id = _class_id(cls_text) if cls_text is not None else None
    if class_id is None:
        found = (_class_id(meta.get(f)) for f in fields.class_id if f in meta)
        class_id = next((c for c in found if c is not None), None)
    raw.class_id = -1 if class_id is None else class_id
    info = classes.get(raw.class_id) if raw.class_id >= 0 else None
    raw.synset = (info.synset if info else None) or next(
        (str(meta[f]) for f in fields.synset if meta.get(f)), None
    )
    name = (
        info.name if info else next((str(meta[f]) for f in fields.class_name if meta.get(f)), None)
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
