"""On the CPU, torch threads and DataLoader workers never ask for more cores than there are."""

from __future__ import annotations

import pytest
import torch

from q16.inference import settings
from q16.inference.settings import auto_workers, cpu_threads


@pytest.mark.parametrize("cores", [1, 2, 3, 4, 8, 16, 64])
@pytest.mark.parametrize("ranks", [1, 2, 4])
def test_threads_and_workers_fit_the_cores(monkeypatch, cores: int, ranks: int) -> None:
    monkeypatch.setattr(settings, "usable_cores", lambda: cores)
    for workers in (auto_workers(None, ranks), 0, 1):
        threads = cpu_threads(ranks, workers)
        assert threads >= 1
        if workers < max(1, cores // ranks):  # workers alone leave room: never oversubscribed
            assert (threads + workers) * ranks <= max(cores, ranks)


def test_a_cpu_run_records_threads_within_the_cores(make_cfg, tmp_path) -> None:
    from conftest import infer_overrides
    from q16 import infer
    from q16.sources.wds import synthetic_images, write_shards

    write_shards(synthetic_images(4), str(tmp_path / "s" / "s-%04d.tar"), 4)
    before = torch.get_num_threads()
    summary = infer.run(
        make_cfg(
            *infer_overrides(tmp_path / "out", f"data.shards={tmp_path / 's'}", num_workers=1),
            config_name="infer",
        )
    )
    cores = settings.usable_cores()
    assert summary["torch_threads"] == max(1, cores - 1)
    assert summary["torch_threads"] + summary["num_workers"] <= max(cores, 2)
    assert torch.get_num_threads() == before  # the caller's setting is given back
