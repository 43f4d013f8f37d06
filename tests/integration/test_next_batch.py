"""``q16 next OUT -n N``: the next images a curator should review."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from q16 import cli
from q16.errors import Q16Error
from q16.review import load_run
from q16.review.next_batch import (
    NEXT_FILE,
    explore_count,
    k_center,
    k_means_pp,
    pick,
    write_next_batch,
)
from q16.review.sheet import REVIEW_COLUMNS
from q16.spreadsheet import read_text_csv, write_text_csv
from review_runs import make_run

REPO = Path(__file__).resolve().parents[2]


def _set_scores(out: Path, shard: str, probs: np.ndarray) -> None:
    path = out / "scores" / f"{shard}.parquet"
    table = pq.read_table(path)
    column = table.schema.get_field_index("p_inappropriate")
    pq.write_table(table.set_column(column, "p_inappropriate", pa.array(probs)), path)


def _next(out: Path, n: int, seed: int = 0) -> pd.DataFrame:
    batch = write_next_batch(load_run(out), n, seed)
    return read_text_csv(batch.path)


def _decide(out: Path, keys: list[int], shard: str = "shard-a") -> None:
    rows = [("keep", shard, f"{i:06d}") for i in keys]
    write_text_csv(pd.DataFrame(rows, columns=["decision", "shard", "key"]), out / "review.csv")


@pytest.mark.parametrize("seed", [0, 7])
def test_picks_near_threshold_and_writes_review_columns(tmp_path: Path, seed: int) -> None:
    out = make_run(tmp_path, n_per_shard=200, shards=("shard-a",))
    probs = np.linspace(0.0, 1.0, 200)
    _set_scores(out, "shard-a", probs)
    _decide(out, [*range(50), *range(150, 200)])  # 100 decided: explore 25 / 105 -> none of 5
    picked = _next(out, 5, seed)
    assert list(picked.columns[: len(REVIEW_COLUMNS) - 1]) == list(REVIEW_COLUMNS[:-1])
    assert list(picked.columns[-2:]) == ["note", "shard_version"]
    assert (picked["decision"] == "").all() and (picked["shard_version"].str.len() == 16).all()
    chosen = picked["p_inappropriate"].astype(float)
    # 5 of the 50 undecided nearest to 0.5 (the pool), far closer than a random pick would be
    assert (np.abs(chosen - 0.5) <= 0.13).all()


def test_exploring_share_shrinks_as_reviews_accumulate() -> None:
    assert [explore_count(50, r) for r in (0, 50, 100, 150, 450)] == [50, 25, 17, 12, 5]
    assert explore_count(0, 0) == 0
    probs = np.linspace(0.0, 1.0, 1000)
    rng = np.random.default_rng(0)
    first = pick(probs, 0.5, 20, rng, reviewed=0).rows  # no review yet: a random draw
    assert np.abs(probs[first] - 0.5).max() > 0.2
    later = pick(probs, 0.5, 20, rng, reviewed=380).rows  # 1 explorer, 19 most uncertain
    assert len(set(later.tolist())) == 20
    assert (np.abs(probs[later] - 0.5) <= 0.011).sum() >= 19


def test_explorers_are_not_copies_and_exploiters_keep_away(tmp_path: Path) -> None:
    """First batch, nothing reviewed: every pick explores; copies are drawn once. Later, the
    exploiting picks are not copies of the exploring ones."""
    base = np.random.default_rng(1).normal(size=(4, 16))
    vectors = np.repeat(base, 25, axis=0)
    for seed in range(5):
        rng = np.random.default_rng(seed)
        assert sorted(k_means_pp(vectors, 4, rng) // 25) == [0, 1, 2, 3]
        got = pick(np.full(100, 0.5), 0.5, 4, rng, vectors.__getitem__, reviewed=4).rows
        assert sorted(got // 25) == [0, 1, 2, 3] and len(got) == 4


def test_skips_images_decided_in_any_review(tmp_path: Path) -> None:
    out = make_run(tmp_path, n_per_shard=20, shards=("shard-a",))
    _set_scores(out, "shard-a", np.full(20, 0.5))
    decided = [(d, "shard-a", f"{i:06d}") for i, d in enumerate(["keep", "remove", "unsure"] * 6)]
    write_text_csv(pd.DataFrame(decided, columns=["decision", "shard", "key"]), out / "review.csv")
    picked = _next(out, 10)
    assert set(picked["key"]) == {"000018", "000019"}  # the only two never decided


def test_duplicated_embeddings_are_not_picked_twice(tmp_path: Path) -> None:
    """Ten copies each of three images, all equally uncertain: a batch of three is the three
    distinct images, whatever the seed."""
    out = make_run(tmp_path, n_per_shard=30, shards=("shard-a",))
    _set_scores(out, "shard-a", np.full(30, 0.5))
    base = np.random.default_rng(1).normal(size=(3, 64)).astype(np.float32)
    np.save(out / "embeddings" / "shard-a.npy", np.repeat(base, 10, axis=0))
    for seed in range(3):
        groups = {int(k) // 10 for k in _next(out, 3, seed)["key"]}
        assert groups == {0, 1, 2}


def test_seeded(tmp_path: Path) -> None:
    """A seed gives the same batch again; another seed another batch (the draws are seeded,
    not fixed)."""
    out = make_run(tmp_path, n_per_shard=60, shards=("shard-a", "shard-b"))
    batches = {}
    for seed in (3, 4):
        batches[seed] = _next(out, 8, seed=seed)
        (out / NEXT_FILE).unlink()
        assert _next(out, 8, seed=seed).equals(batches[seed])
        (out / NEXT_FILE).unlink()
    assert set(batches[3]["key"] + batches[3]["shard"]) != set(
        batches[4]["key"] + batches[4]["shard"]
    )


def test_without_embeddings_uncertainty_only(tmp_path: Path) -> None:
    out = make_run(tmp_path, n_per_shard=40, shards=("shard-a",))
    (out / "embeddings" / "shard-a.npy").unlink()
    batch = write_next_batch(load_run(out), 4)
    assert not batch.diverse and "uncertainty only" in batch.describe()


def test_k_center_spreads_and_pick_orders_nan_last() -> None:
    vectors = np.array([[1, 0], [1, 0.01], [0, 1], [-1, 0]], dtype=float)
    assert sorted(k_center(vectors, 3).tolist()) == [0, 2, 3]
    rng = np.random.default_rng(0)
    got = pick(np.array([np.nan, 0.9, 0.5, 0.1]), 0.5, 2, rng, pool_factor=1)
    assert got.rows.tolist()[0] == 2 and 0 not in got.rows.tolist()


def test_filled_in_next_batch_is_kept_and_the_next_round_gets_its_own_sheet(
    tmp_path: Path,
) -> None:
    """Round 2 of the loop: review_next.csv holds decisions, so the next batch goes to
    review_next-2.csv (never over it), and skips what round 1 decided."""
    out = make_run(tmp_path, n_per_shard=20, shards=("shard-a",))
    _next(out, 3)
    sheet = read_text_csv(out / NEXT_FILE)
    sheet["decision"] = "keep"
    write_text_csv(sheet, out / NEXT_FILE)
    outcome = write_next_batch(load_run(out), 3)
    assert outcome.path.name == "review_next-2.csv"
    assert read_text_csv(out / NEXT_FILE)["decision"].tolist() == ["keep"] * 3  # kept
    second = read_text_csv(outcome.path)
    assert not set(second["key"]) & set(sheet["key"])
    with pytest.raises(Q16Error, match="filled-in"):  # an explicit target is never overwritten
        write_next_batch(load_run(out), 3, out=out / NEXT_FILE)


def test_cli_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = make_run(tmp_path, n_per_shard=20, shards=("shard-a",))
    cli.main(["next", str(out), "-n", "4"])
    assert "next batch: 4 of 20" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        cli.main(["next", str(out), "-n", "0"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "-n: '0': give a whole number of at least 1" in err, err
