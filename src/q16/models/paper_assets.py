"""The paper's released prompts and published SMID figures, shipped inside q16.

They were converted once from the MIT-licensed originals of ml-research/Q16 by
``scripts/convert_paper_assets.py``; ``src/q16/paper/PROVENANCE.json`` lists each file with the
sha256 of its original. The prompts were learned against OpenAI's CLIP weights.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from q16.errors import Q16Error
from q16.models.backbone import BackboneSpec, base_model_name

PAPER = "paper"
"""``prompt.path=paper``: the paper's prompts for the chosen model."""
PAPER_PROMPT_MODELS: tuple[str, ...] = ("ViT-B-16", "ViT-B-32", "ViT-L-14")
"""The models the paper released prompts for (learned on SMID with OpenAI's weights)."""
REFERENCE_CSV = "q16_smid_reference.csv"


def _asset(*parts: str) -> Path:
    return Path(str(resources.files("q16").joinpath("paper", *parts)))


def paper_prompt_file(model: str) -> Path:
    """The packaged ``prompts.safetensors`` of the paper for ``model`` (``-quickgelu`` or not).

    Raises:
        Q16Error: the paper released no prompts for that model.
    """
    name = base_model_name(model)
    if name not in PAPER_PROMPT_MODELS:
        raise Q16Error(
            f"prompt.path=paper: the paper released prompts for {', '.join(PAPER_PROMPT_MODELS)} "
            f"only, not {model}; train one (python train.py model={name}) and pass prompt.path"
        )
    return _asset("prompts", f"{name}.safetensors")


def default_prompt_file(spec: BackboneSpec) -> Path | None:
    """What infer.py scores with when no ``prompt.path`` is given: the paper's prompts where
    they exist for the model and the weights are OpenAI's, else None (hand-written prompts)."""
    if not spec.is_openai_weights or base_model_name(spec.name) not in PAPER_PROMPT_MODELS:
        return None
    return paper_prompt_file(spec.name)


def reference_csv() -> Path:
    """The paper's published SMID table (columns: see ``experiments.comparison``)."""
    return _asset(REFERENCE_CSV)
