"""Files users hand to q16 (concept sets, class lists, thresholds, prompt files), read with
bounds: every one is hostile input, so its size, its structure and the messages about it are
capped before anything is built from it.

YAML is read without anchors and aliases: a 400-byte "billion laughs" file names the same
list a million times, and anything that walks it (a check, an error message) walks them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from q16.errors import Q16Error
from q16.fileio import FileTooLarge, NotRegularFile, read_regular

MAX_CONFIG_BYTES = 10_000_000
"""A concept set, class list or thresholds file larger than this is not one (10 MB)."""
MAX_DEPTH = 32
"""Nesting of mappings and lists a YAML file may have (concept sets use 3)."""


def read_user_bytes(path: Path, what: str, max_bytes: int) -> bytes:
    """``path``'s bytes, refused in one line when missing, not a regular file (a FIFO,
    ``/dev/zero``: never read) or larger than ``max_bytes`` (at most ``max_bytes + 1`` bytes
    are ever read: :func:`q16.fileio.read_regular`)."""
    try:
        return read_regular(path, max_bytes)
    except NotRegularFile as err:
        raise Q16Error(f"{path}: {err}; a {what} is a file") from None
    except FileTooLarge as err:
        size = f"{err.size:,} bytes" if err.size is not None else "more bytes"
        raise Q16Error(f"{path}: {size}, over the {max_bytes:,} a {what} may have") from None
    except OSError as err:
        raise Q16Error(f"{path}: cannot read the {what} ({err.strerror or err})") from None


def read_user_text(path: Path, what: str, max_bytes: int = MAX_CONFIG_BYTES) -> str:
    """``path``'s text (UTF-8), refused in one line when missing, too large, not a regular
    file or not text."""
    data = read_user_bytes(path, what, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Q16Error(f"{path}: not UTF-8 text; a {what} is a UTF-8 file") from None


def check_size(path: Path, what: str, max_bytes: int) -> None:
    """A binary file the user names (a prompt file) is refused when larger than ``max_bytes``."""
    try:
        size = path.stat().st_size
    except OSError as err:
        raise Q16Error(f"{path}: cannot read the {what} ({err.strerror or err})") from None
    if size > max_bytes:
        raise Q16Error(f"{path}: {size:,} bytes, over the {max_bytes:,} a {what} may have")


class _NoAliasLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses anchors and aliases and deep nesting."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(
                f"aliases (*{event.anchor}) are not accepted (line {event.start_mark.line + 1})"
            )
        event = self.peek_event()
        if getattr(event, "anchor", None):
            raise yaml.YAMLError(
                f"anchors (&{event.anchor}) are not accepted (line {event.start_mark.line + 1})"
            )
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.YAMLError(f"nested too deeply (over {MAX_DEPTH} levels)")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(text: str, where: str, what: str = "file") -> Any:
    """Plain YAML data (no anchors, aliases or tags beyond the safe ones), or one line."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)
    except (yaml.YAMLError, RecursionError) as err:
        first = "nested too deeply" if isinstance(err, RecursionError) else str(err)
        shown = " ".join(first.split())[:200]
        raise Q16Error(f"{where}: not a readable YAML {what} ({shown})") from None
