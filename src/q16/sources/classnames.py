"""Class index -> (synset, readable name) for ImageNet-style inputs.

The class list cannot be downloaded here, so users pass a mapping file
(``data.class_names=...``) in one of the formats people already have:

* JSON list: ``["tench", "goldfish", ...]`` (index = position);
* JSON object: ``{"0": ["n01440764", "tench"], ...}`` (Keras' ``imagenet_class_index.json``),
  or ``{"0": "tench", ...}``, or ``{"n01440764": "tench", ...}`` (synset -> name, index =
  sorted synset order, as torchvision's ImageFolder numbers the class folders);
* TXT, one class per line in index order: ``n01440764 tench`` / ``n01440764,tench`` / ``tench``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from q16.errors import Q16Error
from q16.userfiles import read_user_text

SYNSET = re.compile(r"^n\d{8}$")
SYNSET_LINE = re.compile(r"^(n\d{8})(?:[\s,]+(.*))?$")


@dataclass(frozen=True)
class ClassInfo:
    synset: str | None
    name: str


@dataclass
class ClassNames:
    """Lookup by index or synset; empty when no mapping was given."""

    by_index: dict[int, ClassInfo]

    @property
    def by_synset(self) -> dict[str, tuple[int, ClassInfo]]:
        return {c.synset: (i, c) for i, c in self.by_index.items() if c.synset}

    def __len__(self) -> int:
        return len(self.by_index)

    def get(self, index: int) -> ClassInfo | None:
        return self.by_index.get(index)


def load_class_names(path: str | Path | None) -> ClassNames:
    """Parse a mapping file (formats in the module docstring); ``None`` gives an empty map."""
    if path is None:
        return ClassNames({})
    path = Path(path).expanduser()
    if not path.is_file():
        raise Q16Error(f"data.class_names={str(path)!r}: no such file (JSON or TXT class list)")
    text = read_user_text(path, "class list")
    try:
        if path.suffix.lower() == ".json":
            return ClassNames(_from_json(json.loads(text)))
        return ClassNames(_from_lines(text.splitlines()))
    except (ValueError, TypeError, IndexError) as err:
        raise Q16Error(f"{path}: not a class list this reader understands ({err})") from err


def _from_json(obj: object) -> dict[int, ClassInfo]:
    if isinstance(obj, list):
        return {i: _info(v) for i, v in enumerate(obj)}
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON list or object")
    if obj and all(SYNSET.match(str(k)) for k in obj):
        return {i: ClassInfo(k, _info(obj[k]).name) for i, k in enumerate(sorted(obj))}
    return {int(k): _info(v) for k, v in obj.items()}


def _info(value: object) -> ClassInfo:
    if isinstance(value, list | tuple):
        if len(value) == 2:
            return ClassInfo(str(value[0]), str(value[1]))
        value = value[0]
    text = str(value).strip()
    return ClassInfo(None, text)


def _from_lines(lines: list[str]) -> dict[int, ClassInfo]:
    out: dict[int, ClassInfo] = {}
    for line in (raw.strip() for raw in lines):
        if not line:
            continue
        match = SYNSET_LINE.match(line)
        if match:
            out[len(out)] = ClassInfo(match[1], (match[2] or "").strip() or match[1])
        else:
            out[len(out)] = ClassInfo(None, line)
    return out
