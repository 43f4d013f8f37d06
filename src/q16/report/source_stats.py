"""The datasheet's paragraph on what the downloader listed and lost (``source_stats``).

A screening covers the images that reached the dataset. When img2dataset's stats were found
beside the shards, ``summary.json`` holds ``source_stats`` and the datasheet says how many URLs
were listed, how many failed to download (and why, most often) or to resize, and how many q16
screened, so nobody reads "N images screened" as "every listed URL screened". ``summary.json``
is a file like any other: a value of the wrong type drops the paragraph (or the reason), never
the datasheet.
"""

from __future__ import annotations

from typing import Any

from q16.text import md_cell

COUNT_KEYS = ("urls_listed", "successes", "failed_to_download", "failed_to_resize")


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _reasons(value: object) -> str:
    shown = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, list | tuple) and len(item) == 2 and _count(item[1]) is not None:
            shown.append(f"{md_cell(item[0], 80)} ({item[1]:,})")
    return f" (most often: {'; '.join(shown)})" if shown else ""


def source_stats_lines(summary: dict[str, Any], screened: int) -> list[str]:
    """Markdown lines (a heading and one paragraph), or none when no stats are known."""
    stats = summary.get("source_stats")
    if not isinstance(stats, dict):
        return []
    counts = {k: _count(stats.get(k)) for k in COUNT_KEYS}
    if any(v is None for v in counts.values()):
        return []
    listed, ok = counts["urls_listed"] or 0, counts["successes"] or 0
    with_stats, total = _count(stats.get("shards_with_stats")), _count(stats.get("shards_total"))
    where = (
        f" (stats found for {with_stats:,} of {total:,} shards)"
        if with_stats is not None and total is not None and with_stats < total
        else ""
    )
    kind = md_cell(stats.get("kind") or "the downloader", 40)
    held = _count(stats.get("images_in_shards"))
    disagree = (
        f" **The stats do not match the shards: they claim {ok:,} images downloaded, the "
        f"shards hold {held:,}** (cut or missing shards, or stats of another download); the "
        "downloader's figures above are its own, not checked."
        if stats.get("stats_agree") is False and held is not None
        else ""
    )
    return [
        "## What the download left out",
        "",
        f"{kind} listed {listed:,} URLs{where}: {ok:,} images were downloaded, "
        f"{counts['failed_to_download']:,} failed to download"
        f"{_reasons(stats.get('top_failure_reasons'))} and {counts['failed_to_resize']:,} "
        f"failed to resize. q16 screened {screened:,} images. URLs that failed were never "
        f"screened: what they showed is not known.{disagree}",
        "",
    ]
