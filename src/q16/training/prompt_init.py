"""``prompt.init``: start training from an earlier prompt file instead of the hand-written
prompts, e.g. to refine a deployed prompt with a curator's review (``data=review``)."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from q16.errors import Q16Error
from q16.models.backbone import Backbone
from q16.models.paper_assets import PAPER
from q16.models.prompt_head import PromptHead
from q16.models.prompt_io import load_prompt_for, prompt_file
from q16.models.prompts import ClassEmbeddingHead, LinearProbe
from q16.training.settings import HeadFactory

SUPPORTED = ("soft", "zeroshot", "zeroshot_ensemble", "linear")
"""Prompt types whose head can take a saved file's tensors; CoOp has ``prompt.head.init_from``."""


def check_init(init: str, prompt_name: str) -> None:
    """Cheap checks before any weights load: a supported prompt type and an existing file."""
    if prompt_name == "coop":
        raise Q16Error(
            "prompt.init is not supported for prompt=coop; continue a CoOp run with "
            "prompt.head.init_from=<its prompts.safetensors>"
        )
    if prompt_name not in SUPPORTED:
        raise Q16Error(f"prompt.init is not supported for prompt={prompt_name}")
    if init != PAPER and not Path(init).expanduser().is_file():
        raise Q16Error(f"prompt.init={init!r}: file not found (a prompts.safetensors or 'paper')")


def with_init(build: HeadFactory, init: str) -> HeadFactory:
    """``build`` followed by loading ``init``'s tensors into the head it made."""
    return functools.partial(_initialised, build, init)


def _initialised(build: HeadFactory, init: str, backbone: Backbone) -> PromptHead:
    head = build(backbone)
    try:
        loaded, meta = load_prompt_for(init, backbone)
    except Q16Error as err:
        raise Q16Error(f"prompt.init: {err}") from None
    if isinstance(head, ClassEmbeddingHead) and isinstance(loaded, ClassEmbeddingHead):
        head.class_embeddings.data.copy_(loaded.class_embeddings.detach())
        head.logit_scale = loaded.logit_scale  # "before" scores exactly as the file scores
    elif isinstance(head, LinearProbe) and isinstance(loaded, LinearProbe):
        head.linear.load_state_dict(loaded.linear.state_dict())
    else:
        raise Q16Error(
            f"prompt.init={init!r}: a {meta.kind} prompt file cannot start a {head.kind} head; "
            "pass prompt=soft for class-embedding files, prompt=linear for linear ones"
        )
    return head


def parent_lineage(init: str, backbone: Backbone) -> dict[str, str]:
    """``path`` and ``sha256`` of the init file (what the new prompt was trained from)."""
    path = prompt_file(init, backbone.spec.name)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"path": str(path.resolve()), "sha256": digest}
