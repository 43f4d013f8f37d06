"""Text from a dataset made safe to show: keys, class names, captions, file names, reasons.

Any of them may be multi-line, megabytes long, hold control characters, bidirectional overrides
(U+202E shows ``gpj.exe`` as ``exe.jpg``), lone surrogates, or any script. One function per
destination: :func:`html_text` (report.html), :func:`md_cell` (datasheet_q16.md tables),
:func:`plot_label` (matplotlib), :func:`clean` (anything else, the word cloud). None of them
ever raises on a string; the report must not fail or mislead because of one.
"""

from __future__ import annotations

import html
import re
import unicodedata

BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
"""Characters that reorder the text around them (Unicode's Bidi_Control property)."""
DEFAULT_LIMIT = 200
"""Characters shown of one value; the rest becomes an ellipsis."""
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&$])")
"""What acts inline in a table cell (GitHub Markdown: emphasis, code, links, HTML, entities,
math, strikethrough, the cell separator); values never start a line, so ``#``, ``-`` are safe."""


def _visible(char: str) -> str:
    if char in BIDI_CONTROLS:
        return f"[U+{ord(char):04X}]"  # shown, not obeyed: the reviewer sees it is there
    if char in "\n\r\t\v\f\x85\u2028\u2029":
        return " "
    if unicodedata.category(char) in ("Cc", "Cs"):  # other controls, lone surrogates
        return "\ufffd"
    return char


def clean(value: object, limit: int = DEFAULT_LIMIT) -> str:
    """``value`` as one line of printable text, at most ``limit`` characters (plus "…")."""
    text = "" if value is None else str(value)
    if len(text) > limit:
        text = text[:limit] + "…"
    if text.isascii() and text.isprintable():
        return text
    return "".join(map(_visible, text))


def html_text(value: object, limit: int = DEFAULT_LIMIT) -> str:
    """:func:`clean`, escaped for HTML text and attribute values."""
    return html.escape(clean(value, limit), quote=True)


def md_cell(value: object, limit: int = DEFAULT_LIMIT) -> str:
    """:func:`clean`, with every character Markdown (or HTML inside it) would act on escaped:
    a ``|`` cannot split a table cell, ``<b>`` is not a tag, ``[x](y)`` is not a link."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", clean(value, limit))


def plot_label(value: object, limit: int = 40) -> str:
    """:func:`clean` for matplotlib, where ``$...$`` would be parsed as (possibly bad) math."""
    return clean(value, limit).replace("$", r"\$")
