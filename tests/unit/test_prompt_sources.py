"""evaluate.py's sources: names, files and display labels, checked before anything loads."""

from __future__ import annotations

import pytest

from q16.errors import Q16Error
from q16.experiments.prompt_sources import load_sources, parse_sources
from q16.models.prompt_io import PromptMetadata, save_prompt
from q16.models.prompts import class_embedding_prompt

CONFIGS = ("zeroshot", "zeroshot_ensemble")


def test_names_files_and_labels(tmp_path) -> None:
    run = tmp_path / "lr=0.1"  # an "=" in a folder name is part of the path, not a label
    run.mkdir()
    (run / "prompts.safetensors").write_bytes(b"")
    specs = parse_sources(
        ["paper", "zeroshot", f"mine={run}/prompts.safetensors", f"{run}/prompts.safetensors"],
        CONFIGS,
    )
    assert [(s.label, s.target) for s in specs] == [
        (None, "paper"),
        (None, "zeroshot"),
        ("mine", f"{run}/prompts.safetensors"),
        (None, f"{run}/prompts.safetensors"),
    ]


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        ([], "sources is empty"),
        (["soft"], "'soft' is neither paper, a prompt config"),
        (["a=zeroshot", "a=zeroshot_ensemble"], "label 'a' is given to more than one source"),
    ],
)
def test_bad_sources_are_one_line_errors(sources, message) -> None:
    with pytest.raises(Q16Error, match=message):
        parse_sources(sources, CONFIGS)


def test_two_soft_runs_are_told_apart_by_folder(tmp_path, tiny_backbone) -> None:
    head = class_embedding_prompt(tiny_backbone, trainable=False)
    meta = PromptMetadata(head.kind, 64, "q16-tiny", None, extra={"prompt": "soft", "data": "x"})
    for run in ("run-a", "run-b"):
        save_prompt(tmp_path / run / "prompts.safetensors", head, meta)
    texts = [str(tmp_path / run / "prompts.safetensors") for run in ("run-a", "run-b")]
    zeroshot = {"zeroshot": lambda backbone: class_embedding_prompt(backbone, trainable=False)}
    sources = load_sources(parse_sources(["zeroshot", *texts], CONFIGS), tiny_backbone, zeroshot)
    assert [s.label for s in sources] == ["zeroshot", "soft (run-a)", "soft (run-b)"]
    assert sources[1].trained_on == "x" and sources[1].kind == "file"
