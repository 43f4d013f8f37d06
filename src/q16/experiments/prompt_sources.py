"""The prompt sets ``evaluate.py`` compares: named in the config as strings, checked before any
image is encoded, then loaded against the backbone (a file for another model or embedding width
is refused there, with one line naming the file).

A source is ``paper`` (the paper's learned prompts for the model), the name of a hand-written
prompt config (``zeroshot``, ``zeroshot_ensemble``), or a prompt file (``prompts.safetensors``
from train.py, the paper's ``.p``, a ``(2, D)`` ``.npy``); ``label=source`` names it in the table.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from q16.errors import Q16Error
from q16.models.backbone import Backbone, base_model_name
from q16.models.paper_assets import PAPER, PAPER_PROMPT_MODELS
from q16.models.prompt_head import PromptHead, is_trainable
from q16.models.prompt_io import load_prompt_for, prompt_file
from q16.training.settings import HeadFactory

log = logging.getLogger(__name__)

_LABEL = re.compile(r"[\w .+()-]+")  # no "/": "runs/lr=0.1/prompts.safetensors" stays a path


@dataclass(frozen=True)
class SourceSpec:
    """One entry of ``sources``, parsed; a file is known to exist."""

    text: str
    target: str
    label: str | None = None

    @property
    def path(self) -> Path:
        return Path(self.target).expanduser()


@dataclass
class PromptSource:
    """A loaded prompt set and what the table says about it."""

    label: str
    head: PromptHead
    kind: str
    """``paper``, ``config`` (a hand-written prompt config) or ``file``."""
    origin: str
    """The config name or the resolved file path."""
    prompt_type: str | None = None
    """What trained it (``soft``, ``linear``, ``coop``), from a q16 file's metadata."""
    trained_on: str | None = None
    """The data it was trained on, from a q16 file's metadata."""
    sha256: str | None = None
    """Of the file, so a table can be traced to the exact prompts."""

    def describe(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "kind": self.kind,
            "origin": self.origin,
            "head": self.head.kind,
            "prompt_type": self.prompt_type,
            "trained_on": self.trained_on,
            "sha256": self.sha256,
        }


def parse_sources(texts: Sequence[str], configs: Collection[str]) -> list[SourceSpec]:
    """``sources`` as specs; unknown names, missing files and repeated labels are user errors.

    Args:
        configs: the hand-written prompt configs a source may name (``prompts`` in the config).
    """
    if not texts:
        raise Q16Error("sources is empty; e.g. 'sources=[zeroshot,outputs/train/<run>/...]'")
    specs = []
    for text in texts:
        label, target = _split_label(str(text).strip())
        spec = SourceSpec(str(text), target, label)
        if target != PAPER and target not in configs and not spec.path.is_file():
            raise Q16Error(
                f"sources: {target!r} is neither {PAPER}, a prompt config "
                f"({', '.join(configs)}) nor an existing prompt file"
            )
        specs.append(spec)
    repeated = [name for name, n in Counter(s.label for s in specs if s.label).items() if n > 1]
    if repeated:
        raise Q16Error(f"sources: label {repeated[0]!r} is given to more than one source")
    return specs


def _split_label(text: str) -> tuple[str | None, str]:
    label, sep, target = text.partition("=")
    if sep and target.strip() and _LABEL.fullmatch(label.strip()):
        return label.strip(), target.strip()
    return None, text


def for_model(specs: Sequence[SourceSpec], model: str) -> list[SourceSpec]:
    """The specs that exist for ``model``: ``paper`` only for the models the paper released
    prompts for; each one skipped is one line in the log (``evaluate.py``'s default sources
    name ``paper``, which ``model=tiny`` has not). Nothing left is a one-line error."""
    kept = []
    why = f"the paper released prompts for {', '.join(PAPER_PROMPT_MODELS)} only, not {model}"
    for spec in specs:
        if spec.target == PAPER and base_model_name(model) not in PAPER_PROMPT_MODELS:
            log.warning("sources: skipping %s: %s", spec.label or PAPER, why)
            continue
        kept.append(spec)
    if not kept:
        raise Q16Error(
            f"sources: {why}, and nothing else is listed; name a prompt config (zeroshot) or "
            "a prompt file for it"
        )
    return kept


def load_sources(
    specs: Sequence[SourceSpec], backbone: Backbone, configs: Mapping[str, HeadFactory]
) -> list[PromptSource]:
    """Every spec as a frozen head for ``backbone``, with a unique display label."""
    sources = [_load(spec, backbone, configs) for spec in specs]
    _unique_labels(sources, [spec.label is not None for spec in specs])
    return sources


def _load(spec: SourceSpec, backbone: Backbone, configs: Mapping[str, HeadFactory]) -> PromptSource:
    model = backbone.spec.name
    if spec.target in configs:
        head = configs[spec.target](backbone)
        if is_trainable(head):
            raise Q16Error(
                f"sources: prompt config {spec.target!r} is trainable; train it with "
                f"python train.py prompt={spec.target} and list its prompts.safetensors instead"
            )
        return PromptSource(spec.label or spec.target, head, "config", spec.target)
    if spec.target == PAPER:
        if base_model_name(model) not in PAPER_PROMPT_MODELS:
            raise Q16Error(
                f"sources: the paper released prompts for {', '.join(PAPER_PROMPT_MODELS)} "
                f"only, not {model}; drop 'paper' from sources or pass one of those models"
            )
        path = prompt_file(PAPER, model)
        head, _ = load_prompt_for(path, backbone)
        origin = f"{PAPER} ({base_model_name(model)})"
        return PromptSource(spec.label or PAPER, head, PAPER, origin, sha256=_sha256(path))
    path = spec.path.resolve()
    head, meta = load_prompt_for(path, backbone)
    prompt_type = meta.extra.get("prompt") if meta.source == "q16" else None
    return PromptSource(
        spec.label or prompt_type or path.stem,
        head,
        "file",
        str(path),
        prompt_type=prompt_type,
        trained_on=meta.extra.get("data"),
        sha256=_sha256(path),
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _unique_labels(sources: list[PromptSource], explicit: list[bool]) -> None:
    """Two files with the same default label (two soft runs) get their folder's name added."""
    counts = Counter(s.label for s in sources)
    for source, given in zip(sources, explicit, strict=True):
        if counts[source.label] > 1 and not given and source.kind == "file":
            source.label = f"{source.label} ({Path(source.origin).parent.name})"
    labels = [s.label for s in sources]
    repeated = [name for name, n in Counter(labels).items() if n > 1]
    if repeated:
        raise Q16Error(
            f"sources: two sources would both be labelled {repeated[0]!r}; "
            "name them with 'label=source'"
        )
