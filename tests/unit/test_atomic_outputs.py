"""Every file q16 writes is written atomically: on a full disk the file that was there before
is still there, whole (a writer that truncates in place leaves a cut or empty file)."""

from __future__ import annotations

import builtins
import errno
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from omegaconf import OmegaConf
from test_category_bench import BOOT, _table

from q16.experiments.category_bench import benchmark, operating_points, write_benchmark
from q16.privacy import photos
from q16.runinfo import write_run_info
from q16.spreadsheet import write_text_csv


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Call it to make every file opened for writing fail with ENOSPC once opened (so a
    writer in place has already truncated its file)."""
    real = builtins.open

    def failing(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real(file, mode, *args, **kwargs)
        if any(flag in mode for flag in "wax+"):
            handle.close()
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        return handle

    def start() -> None:
        monkeypatch.setattr(builtins, "open", failing)
        monkeypatch.setattr(io, "open", failing)

    return start


def _unchanged(folder: Path, write: Callable[[], object], full_disk: Callable[[], None]) -> None:
    write()  # the first time: the files a user now has
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert before and all(before.values())
    full_disk()
    with pytest.raises(OSError):
        write()
    after = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert after == before  # each file whole, and no temporary file left beside them


def test_run_info_and_config_survive_a_full_disk(
    tmp_path: Path, full_disk: Callable[[], None]
) -> None:
    cfg = OmegaConf.create({"model": "tiny", "seed": 0})
    _unchanged(tmp_path, lambda: write_run_info(tmp_path, cfg, note="x"), full_disk)


def test_category_benchmark_outputs_survive_a_full_disk(
    tmp_path: Path, full_disk: Callable[[], None]
) -> None:
    table, heads = _table()
    metrics = benchmark(table, heads, BOOT)
    points = operating_points(table, heads, target_precision=0.9)
    record = {"bootstrap": {"n_resamples": 200, "seed": 0}}
    _unchanged(tmp_path, lambda: write_benchmark(tmp_path, metrics, points, record), full_disk)


def test_demo_photographs_survive_a_full_disk(
    tmp_path: Path, full_disk: Callable[[], None]
) -> None:
    _unchanged(tmp_path, lambda: photos.write_folder(tmp_path), full_disk)


def test_a_csv_written_to_a_path_survives_a_full_disk(
    tmp_path: Path, full_disk: Callable[[], None]
) -> None:
    frame = pd.DataFrame({"key": ["a", "=b"], "p": [0.1, 0.2]})
    _unchanged(tmp_path, lambda: write_text_csv(frame, tmp_path / "t.csv"), full_disk)
