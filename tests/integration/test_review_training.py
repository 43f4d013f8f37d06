"""``train.py data=review``: prompts that learn from a curator's decisions (issue 13 §3-4)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.errors import one_line
from q16.data.review import ReviewDecisions, sha256_file
from q16.errors import Q16Error
from q16.models.prompt_io import load_prompt
from q16.spreadsheet import read_text_csv, write_text_csv
from q16.train import run
from review_runs import make_run, write_filled_review, write_init_prompt

FAST = ("model=tiny", "device=cpu", "trainer=cpu", "callbacks=none", "logger=none")


def _review_cfg(make_cfg, review: Path, init: Path, *extra: str):
    return make_cfg(
        *FAST,
        "data=review",
        f"data.path={review}",
        "prompt=soft",
        f"prompt.init={init}",
        "split.test_fraction=0.3",
        "trainer.max_epochs=30",
        "prompt.optimizer.lr=0.01",
        *extra,
    )


@pytest.mark.slow
def test_one_round_raises_held_out_auroc_and_records_lineage(tmp_path: Path, make_cfg) -> None:
    """The reviewer's rule differs from the init prompt's: training on the review must raise
    AUROC on held-out reviewed images, and the new file must say where it came from."""
    out = make_run(tmp_path)
    review = write_filled_review(out)
    init = write_init_prompt(tmp_path / "init.safetensors")
    result = run(_review_cfg(make_cfg, review, init))

    assert result.tuned["auroc"] > result.zeroshot["auroc"] + 0.2
    assert result.tuned["auroc"] > 0.85
    _, meta = load_prompt(result.prompt_file, model="q16-tiny", embed_dim=64)
    assert meta.parent == {"path": str(init.resolve()), "sha256": sha256_file(init)}
    decided = read_text_csv(review)["decision"].isin(["keep", "remove"]).sum()
    assert meta.review == {
        "path": str(review.resolve()),
        "sha256": sha256_file(review),
        "n_decisions": int(decided),
    }
    assert result.n_train + result.n_test == decided  # unsure and blank rows dropped
    info = json.loads((result.prompt_file.parent / "run_info.json").read_text())
    assert info["review"]["n_decisions"] == decided and info["prompt_init"]["path"]


def test_labels_follow_decisions_and_quoted_keys_match(tmp_path: Path) -> None:
    """remove = 1, keep = 0, whatever the case and spacing of the decision."""
    out = make_run(tmp_path, n_per_shard=4, shards=("shard-a",))
    rows = [
        (" REMOVE ", "shard-a", "000000"),
        ("Keep", "shard-a", "000001"),
        ("unsure", "shard-a", "000002"),
        ("", "shard-a", "000003"),
    ]
    review = out / "review.csv"
    pd.DataFrame(rows, columns=["decision", "shard", "key"]).to_csv(review, index=False)
    reviewed = ReviewDecisions(str(review)).load_features()
    assert reviewed.data.labels.tolist() == [1, 0]
    emb = np.load(out / "embeddings" / "shard-a.npy")
    np.testing.assert_array_equal(reviewed.features.numpy(), emb[[0, 1]])
    assert reviewed.data.dropped["unsure_or_blank"] == 2


def _review(out: Path, rows: list[tuple[str, str, str]], name: str = "review.csv") -> Path:
    path = out / name
    write_text_csv(pd.DataFrame(rows, columns=["decision", "shard", "key"]), path)
    return path


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([("unsure", "shard-a", "000000"), ("", "shard-a", "000001")], "no keep or remove"),
        ([("keep", "shard-a", "000000"), ("keep", "shard-a", "000001")], "both keep and remove"),
        ([("keep", "shard-a", "000000"), ("remove", "other-run", "000001")], "another run"),
        ([("keep", "shard-a", "999999"), ("remove", "shard-a", "000001")], "another run"),
        ([("keep", "../../etc", "passwd"), ("remove", "shard-a", "000001")], "another run"),
        ([("keep", "shard-a", "000000"), ("delete", "shard-a", "000001")], "invalid decision"),
        ([("keep", "shard-a", "000000"), ("remove", "shard-a", "000000")], "conflicting decisions"),
    ],
)
def test_bad_reviews_are_one_line(tmp_path: Path, rows, expected: str) -> None:
    out = make_run(tmp_path, n_per_shard=4, shards=("shard-a",))
    with pytest.raises(Q16Error) as err:
        ReviewDecisions(str(_review(out, rows))).load_features()
    assert expected in one_line(err)


def test_one_image_quoted_and_unquoted_with_two_decisions_is_refused(tmp_path: Path) -> None:
    """A spreadsheet may drop the quote q16 put before a formula-like cell: '=evil and =evil
    are one image, so keep in one row and remove in the other is a contradiction."""
    out = make_run(tmp_path, n_per_shard=4, shards=("=evil",))
    rows = [("keep", "'=evil", "000000"), ("remove", "=evil", "000000")]
    rows.append(("remove", "=evil", "000001"))
    review = out / "review.csv"

    def write() -> str:  # cells exactly as a spreadsheet saved them (no quoting added)
        pd.DataFrame(rows, columns=["decision", "shard", "key"]).to_csv(review, index=False)
        return str(review)

    with pytest.raises(Q16Error) as err:
        ReviewDecisions(write()).load_features()
    assert "conflicting decisions for 1 image(s): =evil/000000" in one_line(err)
    rows[1] = ("keep", "=evil", "000000")  # the same decision twice: that image once
    assert len(ReviewDecisions(write()).load_features().data) == 2


def test_run_without_saved_embeddings_says_how_to_make_them(tmp_path: Path) -> None:
    out = make_run(tmp_path, n_per_shard=4, shards=("shard-a",))
    (out / "embeddings" / "meta.json").unlink()
    review = _review(out, [("keep", "shard-a", "000000"), ("remove", "shard-a", "000001")])
    with pytest.raises(Q16Error) as err:
        ReviewDecisions(str(review)).load_features()
    assert "infer.save_embeddings=true" in one_line(err)


def test_review_outside_a_run_names_data_run_dir(tmp_path: Path) -> None:
    out = make_run(tmp_path, n_per_shard=4, shards=("shard-a",))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    review = _review(elsewhere, [("keep", "shard-a", "000000"), ("remove", "shard-a", "000001")])
    with pytest.raises(Q16Error) as err:
        ReviewDecisions(str(review)).load_features()
    assert "data.run_dir" in one_line(err)
    assert len(ReviewDecisions(str(review), run_dir=str(out)).load_features().data) == 2


def test_embeddings_of_another_model_are_refused_before_the_weights(
    tmp_path: Path, make_cfg
) -> None:
    out = make_run(tmp_path, model="ViT-L-14")
    review = write_filled_review(out)
    init = write_init_prompt(tmp_path / "init.safetensors")
    with pytest.raises(Q16Error) as err:
        run(_review_cfg(make_cfg, review, init))
    assert "model=ViT-L-14" in one_line(err)


def test_init_for_another_model_is_one_line(tmp_path: Path, make_cfg) -> None:
    out = make_run(tmp_path)
    review = write_filled_review(out)
    wide = write_init_prompt(tmp_path / "wide.safetensors", model="ViT-B-32", dim=512)
    with pytest.raises(Q16Error) as err:
        run(_review_cfg(make_cfg, review, wide))
    message = one_line(err)
    assert message.startswith("prompt.init:") and "ViT-B-32" in message


@pytest.mark.parametrize(
    ("prompt", "init", "expected"),
    [("coop", "x.safetensors", "prompt.head.init_from"), ("soft", "missing.st", "not found")],
)
def test_init_settings_checked_first(
    tmp_path: Path, make_cfg, prompt: str, init: str, expected: str
) -> None:
    cfg = make_cfg(*FAST, "data=synthetic", f"prompt={prompt}", f"prompt.init={tmp_path / init}")
    with pytest.raises(Q16Error) as err:
        run(cfg)
    assert expected in one_line(err)


def test_rounds_of_reviews_add_up_and_conflicts_are_refused(tmp_path: Path) -> None:
    """``data.path=[review.csv, review_next.csv]``: each round's decisions count once; an
    image decided both ways across rounds is a one-line error; NaN embeddings are dropped."""
    out = make_run(tmp_path, n_per_shard=6, shards=("shard-a",))
    emb = np.load(out / "embeddings" / "shard-a.npy")
    emb[5] = np.nan
    np.save(out / "embeddings" / "shard-a.npy", emb)
    first = _review(out, [("keep", "shard-a", "000000"), ("remove", "shard-a", "000001")])
    rows = [("remove", "shard-a", "000002"), ("keep", "shard-a", "000000")]
    second = _review(out, [*rows, ("remove", "shard-a", "000005")], "review_next.csv")
    reviewed = ReviewDecisions([str(first), str(second)]).load_features()
    assert sorted(reviewed.data.labels.tolist()) == [0, 1, 1]
    assert reviewed.data.dropped["non_finite_embedding"] == 1
    assert [f["path"] for f in reviewed.lineage["files"]] == [str(first), str(second)]
    clash = _review(out, [("remove", "shard-a", "000000")], "review_clash.csv")
    with pytest.raises(Q16Error) as err:
        ReviewDecisions([str(first), str(clash)]).load_features()
    assert "contradicts" in one_line(err)


@pytest.mark.slow
def test_review_of_a_real_infer_run(tmp_path: Path, make_cfg, tiny_backbone) -> None:
    """infer.py with saved embeddings -> a review decided by a rule the init prompt does not
    follow -> train.py data=review: held-out AUROC rises; report's --next-batch skips it."""
    from conftest import infer_overrides
    from q16 import infer
    from q16.models.prompt_io import PromptMetadata, save_prompt
    from q16.models.prompts import class_embedding_prompt
    from q16.review import load_run
    from q16.review.next_batch import write_next_batch
    from q16.sources.wds import synthetic_images, write_shards

    head = class_embedding_prompt(tiny_backbone, trainable=False)
    meta = PromptMetadata(kind=head.kind, embed_dim=64, model="q16-tiny", pretrained=None)
    init = save_prompt(tmp_path / "init.safetensors", head, meta)
    shards = write_shards(synthetic_images(160, seed=3), str(tmp_path / "s" / "s-%03d.tar"), 80)
    out = tmp_path / "scored"
    infer.run(
        make_cfg(
            *infer_overrides(out, f"data.shards=[{','.join(map(str, shards))}]"),
            "infer.save_embeddings=true",
            f"prompt.path={init}",
            config_name="infer",
        )
    )
    rows = []
    for parquet in sorted((out / "scores").glob("*.parquet")):
        keys = pd.read_parquet(parquet)["key"]
        emb = np.load(out / "embeddings" / f"{parquet.stem}.npy")
        rows += [(parquet.stem, k, e) for k, e in zip(keys, emb, strict=True)]
    emb = np.stack([e for *_, e in rows])
    centred = emb - emb.mean(axis=0)
    direction = np.linalg.svd(centred, full_matrices=False)[2][0]  # the main axis of variation
    side = centred @ direction > np.median(centred @ direction)
    decided = [
        ("remove" if s else "keep", shard, key)
        for (shard, key, _), s in zip(rows, side, strict=True)
    ]
    review = _review(out, decided)
    result = run(_review_cfg(make_cfg, review, init))
    assert result.tuned["auroc"] > result.zeroshot["auroc"]
    assert result.n_train + result.n_test == len(rows)
    batch = write_next_batch(load_run(out), 10)
    assert batch.candidates == 0 and batch.picked == 0  # everything is decided


@pytest.mark.slow
def test_cli_review_without_decisions_is_one_line(tmp_path: Path, launch_env) -> None:
    import subprocess
    import sys

    out = make_run(tmp_path, n_per_shard=4, shards=("shard-a",))
    review = _review(out, [("", "shard-a", "000000"), ("unsure", "shard-a", "000001")])
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve().parents[2] / "train.py"), *FAST,
         "data=review", f"data.path={review}", f"paths.root_dir={tmp_path}"],
        cwd=tmp_path, env={**launch_env(), "PROJECT_ROOT": str(tmp_path)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("q16: error:")]
    assert len(errors) == 1 and "no keep or remove decisions" in errors[0], result.stderr[-2000:]
