"""Hydra's search path for q16's entry points: ``configs/<entry>/`` first, then the shared
folders that ``configs/roots.yaml`` names for that entry (see that file for why).

Hydra finds this module as a plugin (the ``hydra_plugins`` namespace). It acts only when the
primary config folder sits beside a ``roots.yaml`` that names it, so other Hydra apps in the
same environment are untouched.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

ROOTS_FILE = "roots.yaml"


def entry_roots(main: Path) -> list[Path]:
    """The folders ``configs/roots.yaml`` lists for the entry folder ``main`` (none: not q16's)."""
    listing = main.parent / ROOTS_FILE
    if not listing.is_file():
        return []
    roots = yaml.safe_load(listing.read_text(encoding="utf-8")) or {}
    return [main.parent / str(name) for name in roots.get(main.name) or ()]


class Q16ConfigRoots(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        for element in list(search_path.get_path()):
            if element.provider != "main" or element.path is None:
                continue
            path = element.path.removeprefix("file://")
            if "://" in path:  # a package (pkg://), not a folder
                continue
            for root in entry_roots(Path(path)):
                search_path.append("q16", f"file://{root}")
