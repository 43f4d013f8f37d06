"""``datasheet_q16.md`` is a draft a curator may edit in place: q16 rewrites it only while it is
provably q16's own, unchanged since q16 wrote it.

The draft ends with an HTML comment (invisible once rendered) holding the sha256 of the text
above it. A draft whose text no longer matches (edited), or without the comment (not q16's,
or from an older q16), is refused, not replaced: the curator's words are never lost.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from q16.errors import Q16Error
from q16.fileio import atomic_write_text

_MARK = (
    "<!-- q16 draft sha256:{digest} (q16 rewrites this file only while the text above is "
    "unchanged) -->\n"
)
_FOUND = re.compile(r"\n<!-- q16 draft sha256:([0-9a-f]{64}) [^\n]*-->\n\Z")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_draft_replaceable(path: Path) -> None:
    """Refuse to replace ``path`` unless it is missing or q16's unedited draft.

    Raises:
        Q16Error: edited since q16 wrote it, not written by q16, or not a readable file.
    """
    if not path.exists() and not path.is_symlink():
        return
    keep = "rename or move it to keep it, and q16 writes a new draft"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise Q16Error(f"{path} cannot be read ({type(err).__name__}); {keep}") from None
    found = _FOUND.search(text)
    if found is None or _digest(text[: found.start()]) != found.group(1):
        raise Q16Error(f"{path} was edited since q16 wrote it (or q16 did not write it); {keep}")


def write_draft(path: Path, text: str) -> Path:
    """``text`` (ending in a newline) and its mark, atomically."""
    text = text if text.endswith("\n") else text + "\n"
    atomic_write_text(path, text + "\n" + _MARK.format(digest=_digest(text)))
    return path
