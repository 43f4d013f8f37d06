"""``python train.py prompt=coop data=synthetic model=tiny`` end to end."""

from __future__ import annotations

import pytest

from q16 import train_config
from q16.data.splits import train_test_indices
from q16.experiments.single_split import PROMPT_FILE
from q16.models.prompt_io import load_prompt
from q16.models.prompts import ClassEmbeddingHead
from q16.train import run_split
from q16.training.fit import encode, evaluate

FAST = ("model=tiny", "data=synthetic", "device=cpu", "trainer=cpu", "logger=none")


@pytest.mark.slow
def test_coop_lifts_accuracy_and_its_prompt_file_scores_the_same(
    make_cfg, synthetic_root, tmp_path
) -> None:
    common = (
        *FAST,
        f"data.root={synthetic_root}",
        f"features.cache_dir={tmp_path / 'features'}",  # both runs share one encoding pass
        "callbacks=none",
        "trainer.max_epochs=10",
    )
    zeroshot = run_split(make_cfg(*common, "prompt=zeroshot", root=tmp_path / "zeroshot")).tuned
    cfg = make_cfg(*common, "prompt=coop", root=tmp_path / "coop")
    metrics = run_split(cfg).metrics()

    tuned = metrics["tuned"]["accuracy"]
    assert tuned >= 0.9
    assert tuned >= zeroshot["accuracy"] + 0.2
    assert tuned >= metrics["zeroshot"]["accuracy"] + 0.2  # the untrained random context

    # the saved file (class embeddings only) reproduces the trained module's test metrics
    head, meta = load_prompt(tmp_path / "coop" / "out" / PROMPT_FILE, model="q16-tiny")
    assert isinstance(head, ClassEmbeddingHead)
    assert meta.extra["prompt"] == "coop" and meta.extra["coop_n_ctx"] == "16"
    backbone = train_config.build_backbone(cfg)
    encoded = encode(backbone, train_config.load_labeled(cfg), train_config.feature_settings(cfg))
    labels = encoded.data.labels
    _, test_idx = train_test_indices(
        labels, encoded.data.scores, cfg.split.test_fraction, int(cfg.split.seed)
    )
    again = evaluate(head, encoded.features[test_idx], labels[test_idx])
    assert again == pytest.approx(metrics["tuned"], abs=1e-6)
