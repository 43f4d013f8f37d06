"""Read and write prompt files.

Our format is ``prompts.safetensors`` (tensors + string metadata). We also read the paper's
released pickles (``*.p``: float16 arrays of shape (2, D)) through a restricted unpickler, and
plain ``.npy`` arrays such as LAION's ``violence_detection_vit_b_32.npy``.
"""

from __future__ import annotations

import io
import json
import logging
import math
import pickle
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from q16 import CLASS_NAMES, __version__
from q16.errors import Q16Error
from q16.models.backbone import OPENAI_TAG, Backbone, BackboneSpec, base_model_name
from q16.models.concepts import ConceptHead
from q16.models.paper_assets import PAPER, paper_prompt_file
from q16.models.prompt_checks import check_head, check_tensors, one_line
from q16.models.prompt_head import PromptHead
from q16.models.prompts import ClassEmbeddingHead, LinearProbe
from q16.userfiles import check_size

log = logging.getLogger(__name__)

PAPER_LOGIT_SCALE = 100.0

HeadLoader = Callable[[dict[str, torch.Tensor], float], PromptHead]
HEAD_LOADERS: Mapping[str, HeadLoader] = MappingProxyType(
    {
        ClassEmbeddingHead.kind: ClassEmbeddingHead.from_export,
        LinearProbe.kind: LinearProbe.from_export,
        ConceptHead.kind: ConceptHead.from_export,
    }
)
"""``PromptMetadata.kind`` -> a function building the frozen head from its exported tensors
and logit scale. A head that saves as a new kind adds one line here."""


@dataclass
class PromptMetadata:
    """What a prompt file says about itself; checked against the backbone at load time."""

    kind: str
    embed_dim: int
    model: str | None = None
    pretrained: str | None = None
    class_names: list[str] = field(default_factory=lambda: list(CLASS_NAMES))
    logit_scale: float = PAPER_LOGIT_SCALE
    config_hash: str | None = None
    source: str = "q16"
    extra: dict[str, str] = field(default_factory=dict)
    threshold: float | None = None
    """The threshold chosen on labelled data (``scripts/set_prompt_threshold.py``); a
    ``heads:`` entry without its own threshold scores with it."""
    threshold_from: str | None = None
    """How ``threshold`` was chosen (e.g. target precision 0.9 in a thresholds.json)."""
    parent: dict[str, str] | None = None
    """Lineage: ``path`` and ``sha256`` of the prompt file training started from."""
    review: dict[str, Any] | None = None
    """Lineage: ``path``, ``sha256`` (or ``files``: several) and ``n_decisions`` of the review
    it learned from."""

    def to_strings(self) -> dict[str, str]:
        return {"q16": json.dumps(asdict(self)), "q16_version": __version__}

    @classmethod
    def from_strings(cls, strings: dict[str, str]) -> PromptMetadata:
        """Parse and type-check the metadata; any malformation is a ``ValueError``."""
        try:
            fields = json.loads(strings["q16"])
            meta = cls(**fields)
        except (json.JSONDecodeError, TypeError) as err:
            raise ValueError(f"unreadable q16 metadata ({err})") from err
        if not isinstance(meta.kind, str):
            raise ValueError(f"kind must be a string, got {meta.kind!r}")
        if not isinstance(meta.embed_dim, int) or isinstance(meta.embed_dim, bool):
            raise ValueError(f"embed_dim must be an integer, got {meta.embed_dim!r}")
        if isinstance(meta.logit_scale, bool) or not isinstance(meta.logit_scale, int | float):
            raise ValueError(f"logit_scale must be a number, got {meta.logit_scale!r}")
        if not math.isfinite(meta.logit_scale) or meta.logit_scale <= 0:
            raise ValueError(
                f"logit_scale must be a positive finite number, not {meta.logit_scale}"
            )
        if meta.threshold is not None and (
            isinstance(meta.threshold, bool)
            or not isinstance(meta.threshold, int | float)
            or not 0.0 <= meta.threshold <= 1.0
        ):
            raise ValueError(f"threshold must be a number in [0, 1], not {meta.threshold!r}")
        if meta.threshold_from is not None and not isinstance(meta.threshold_from, str):
            raise ValueError(f"threshold_from must be text, not {meta.threshold_from!r}")
        for name in ("parent", "review"):
            if not isinstance(getattr(meta, name), dict | None):
                raise ValueError(f"{name} must be a JSON object or null")
        if list(meta.class_names) != list(CLASS_NAMES):
            raise ValueError(
                f"class_names {meta.class_names!r} are not {list(CLASS_NAMES)} (row 0 "
                "appropriate, row 1 inappropriate); scores would be wrong or inverted"
            )
        return meta


def save_prompt(path: str | Path, head: PromptHead, metadata: PromptMetadata) -> Path:
    """Write trainable state plus metadata (never the CLIP weights)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(head.export_tensors(), str(path), metadata=metadata.to_strings())
    return path


MAX_PROMPT_BYTES = 256_000_000
"""A prompt file is class embeddings or a probe (kilobytes); an encoded concept set of the
most phrases it may have is 40 MB at 1024-d: anything past 256 MB is not a prompt file."""


def prompt_file(path: str | Path, model: str | None) -> Path:
    """Where a ``prompt.path`` points: ``"paper"`` is the paper's released prompt file for
    ``model`` (shipped with q16), anything else a path (``~`` expanded)."""
    if str(path) == PAPER:
        if model is None:
            raise Q16Error("prompt.path=paper needs the model to pick the paper's prompt file")
        return paper_prompt_file(model)
    return Path(path).expanduser()


def load_prompt_for(path: str | Path, backbone: Backbone) -> tuple[PromptHead, PromptMetadata]:
    """:func:`load_prompt` checked against the backbone it will score with (one place)."""
    spec = backbone.spec
    return load_prompt(
        path,
        model=spec.name,
        pretrained=spec.pretrained,
        quick_gelu=spec.quick_gelu,
        embed_dim=backbone.embed_dim,
    )


def load_prompt(
    path: str | Path,
    *,
    model: str | None = None,
    pretrained: str | None = None,
    quick_gelu: bool | None = None,
    embed_dim: int | None = None,
) -> tuple[PromptHead, PromptMetadata]:
    """Load any supported prompt file and check it fits the backbone it will be used with
    (``model``, ``pretrained``, ``quick_gelu`` as in ``BackboneSpec``). ``path="paper"`` is the
    paper's released prompt for ``model`` (shipped with q16).

    Raises:
        Q16Error: missing file, unknown format, unsafe pickle, or a model/dimension mismatch.
    """
    path = prompt_file(path, model)
    if not path.is_file():
        raise Q16Error(f"prompt file {str(path)!r} does not exist")
    check_size(path, "prompt file", MAX_PROMPT_BYTES)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        head, meta = _load_safetensors(path)
    elif suffix in {".p", ".pkl", ".pickle"}:
        head, meta = _array_head(_restricted_unpickle(path), path, "q16-paper-pickle")
    elif suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise Q16Error(f"{path}: not a plain numpy array ({one_line(err)})") from err
        head, meta = _array_head(array, path, "npy")
    else:
        raise Q16Error(
            f"prompt file {path.name!r}: unknown format; use .safetensors (from train.py), "
            "the paper's .p pickle, or a .npy array of shape (2, D)"
        )
    check_head(path, head, meta)
    spec = BackboneSpec(model or "", pretrained, quick_gelu=quick_gelu)
    _check_compatible(path, meta, spec if model else None, embed_dim)
    return head, meta


def _load_safetensors(path: Path) -> tuple[PromptHead, PromptMetadata]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            strings = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise Q16Error(f"{path}: not a readable safetensors file ({err})") from err
    if "q16" not in strings:
        raise Q16Error(f"{path}: safetensors file has no q16 metadata; was it written by q16?")
    try:
        meta = PromptMetadata.from_strings(strings)
    except ValueError as err:
        raise Q16Error(f"{path}: bad q16 metadata: {one_line(err)}") from err
    check_tensors(path, tensors)
    loader = HEAD_LOADERS.get(meta.kind)
    if loader is None:
        raise Q16Error(
            f"{path}: unknown prompt kind {meta.kind!r} (known: {', '.join(HEAD_LOADERS)}); "
            "was it written by a newer q16?"
        )
    try:
        return loader(tensors, meta.logit_scale), meta
    except (KeyError, RuntimeError, ValueError, IndexError, TypeError) as err:
        raise Q16Error(
            f"{path}: {meta.kind} prompt file with missing or bad tensors ({one_line(err)})"
        ) from err


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admit the handful of globals a pickled numpy array needs, nothing else."""

    ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
        }
    )

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith("numpy.core"):
            module = module.replace("numpy.core", "numpy._core", 1)
        return super().find_class(module, name)


def _restricted_unpickle(path: Path) -> np.ndarray:
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(path.read_bytes())).load()
    except Exception as err:  # the unpickler admits numpy only; anything else it raises
        raise Q16Error(
            f"{path}: refused to unpickle ({one_line(err)}); only pickled numpy arrays are "
            "accepted, since a pickle can run arbitrary code"
        ) from err
    if not isinstance(obj, np.ndarray):
        raise Q16Error(f"{path}: pickle holds {type(obj).__name__}, expected a numpy array")
    return obj


def _array_head(array: np.ndarray, path: Path, source: str) -> tuple[PromptHead, PromptMetadata]:
    if array.ndim != 2 or array.shape[0] != len(CLASS_NAMES):
        raise Q16Error(
            f"{path}: expected an array of shape (2, D) (row 0 appropriate, row 1 "
            f"inappropriate), got {tuple(array.shape)}"
        )
    if array.dtype.kind not in "fiu":  # strings, objects, complex, bool: not a prompt
        raise Q16Error(f"{path}: expected a float array, got dtype {array.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):  # out of float32 range: inf, refused
        embeddings = torch.from_numpy(np.asarray(array, dtype=np.float32))
    check_tensors(path, {"class_embeddings": embeddings})
    meta = PromptMetadata(
        kind=ClassEmbeddingHead.kind, embed_dim=int(array.shape[1]), source=source
    )
    return ClassEmbeddingHead(embeddings, PAPER_LOGIT_SCALE, trainable=False), meta


def _is_tag(pretrained: str | None) -> bool:
    """An open_clip tag such as ``openai`` (not a local checkpoint path)."""
    if pretrained is None:
        return False
    return "/" not in pretrained and not Path(pretrained).expanduser().is_file()


def _check_compatible(
    path: Path, meta: PromptMetadata, spec: BackboneSpec | None, embed_dim: int | None
) -> None:
    if embed_dim is not None and meta.embed_dim != embed_dim:
        raise Q16Error(
            f"{path.name}: prompt embedding dim {meta.embed_dim} does not match the model's "
            f"{embed_dim}; use the prompt trained for this model (e.g. ViT-L-14 = 768, "
            "ViT-B-32 = 512)"
        )
    if spec is None:
        return
    model, pretrained = spec.name, spec.pretrained
    # OpenAI's weights under the tag or as a declared local copy: what "openai" in a file means
    same_openai = meta.pretrained == OPENAI_TAG and spec.is_openai_weights
    if meta.model is not None:
        if base_model_name(meta.model) != base_model_name(model):
            raise Q16Error(
                f"{path.name}: prompt was trained for model {meta.model}, not {model}; "
                f"pass model={base_model_name(meta.model)} or a prompt trained for {model}"
            )
        if _is_tag(pretrained) and _is_tag(meta.pretrained) and meta.pretrained != pretrained:
            raise Q16Error(
                f"{path.name}: prompt was trained with pretrained={meta.pretrained!r}, "
                f"not {pretrained!r}; scores would be meaningless"
            )
        if meta.pretrained != pretrained and not same_openai:
            log.warning(
                "%s: trained with weights %s, now used with %s; make sure they are the same",
                path.name,
                meta.pretrained,
                pretrained,
            )
    if meta.source != "q16" and pretrained is not None and not spec.is_openai_weights:
        log.warning(
            "%s: the paper's prompts were learned against OpenAI CLIP weights; "
            "with pretrained=%s their scores are unreliable",
            path.name,
            pretrained,
        )
