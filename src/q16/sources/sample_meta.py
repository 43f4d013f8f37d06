"""What a sample's own text says about it: ``data.meta_columns`` from its ``.json`` / ``.txt``.

img2dataset writes, per image, a ``.json`` (url, caption, key, status, error_message, width,
height, original_width, original_height, exif, sha256, and any column it was asked to keep)
and a ``.txt`` (the caption). A reviewer needs that text beside the image (the caption is often
the offensive part), and joining back to the source needs the url or key. Rules:

* a column is a top-level ``.json`` key; ``txt`` is the ``.txt`` member; ``caption`` falls back
  to the ``.txt`` when the ``.json`` has none;
* strings are kept as they are, ``null`` stays null, anything else (numbers, lists, objects:
  img2dataset's ``exif``) becomes compact JSON text;
* a column a sample does not have is null for that sample (not an error);
* every value is valid UTF-8 text (bad bytes become U+FFFD, lone surrogates ``\\udXXX``) and at
  most :data:`MAX_META_CHARS` characters, cut with a marker that says how much was dropped.
  The report, ``flagged.csv`` and ``review.csv`` escape the text for their medium.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from q16.errors import Q16Error
from q16.sources.base import MAX_TEXT_CHARS, capped, utf8_text

MAX_META_CHARS = MAX_TEXT_CHARS
"""Characters kept of one value: far above a real caption or URL, small enough for a CSV."""
TXT_COLUMN, CAPTION_COLUMN = "txt", "caption"


def valid_text(text: str, limit: int = MAX_META_CHARS) -> str:
    """``text`` cut to ``limit`` characters (with a marker) and encodable as UTF-8."""
    return utf8_text(capped(text, limit))


def decode_text(data: bytes) -> str:
    """Member bytes as text: invalid UTF-8 becomes U+FFFD instead of losing the value."""
    return data.decode("utf-8", "replace")


def parse_json_object(data: bytes) -> tuple[dict[str, Any], str | None]:
    """A ``.json`` member as a dict, and why it could not be read (None: it could).

    Invalid UTF-8 is read as U+FFFD (the rest of the record is still good). Nesting too deep
    for the parser (``RecursionError``) propagates: that sample is a hostile one, recorded.
    """
    if not data:
        return {}, None
    try:
        obj = json.loads(decode_text(data))
    except ValueError as err:
        return {}, f"not valid JSON ({str(err)[:100]})"
    if not isinstance(obj, dict):
        return {}, f"a JSON {type(obj).__name__}, not an object"
    return obj, None


def meta_value(value: object) -> str | None:
    """One ``.json`` value as the text stored in ``meta_<column>``."""
    if value is None:
        return None
    if isinstance(value, str):
        return valid_text(value)
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=True)
    except (TypeError, ValueError, RecursionError):  # cannot happen for parsed JSON
        text = repr(value)
    return valid_text(text)


def sample_meta(
    columns: Sequence[str], record: dict[str, Any], txt: bytes | None
) -> dict[str, str | None]:
    """The ``meta_columns`` of one sample from its parsed ``.json`` and its ``.txt`` bytes."""
    caption = None if txt is None else valid_text(decode_text(txt))
    meta: dict[str, str | None] = {}
    for column in columns:
        if column == TXT_COLUMN or (column == CAPTION_COLUMN and record.get(column) is None):
            meta[column] = caption
        else:
            meta[column] = meta_value(record.get(column))
    return meta


def json_keys(setting: str, value: object) -> tuple[str, ...]:
    """A setting naming ``.json`` keys: null (none), one name, or a list of names."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Iterable) or not all(isinstance(v, str) and v for v in items):
        raise Q16Error(f"{setting}={value!r}: give null, a key name or a list of key names")
    names = tuple(items)
    if len(set(names)) < len(names):
        raise Q16Error(f"{setting}={list(names)!r}: a name is listed twice")
    return names
