"""Load a frozen open_clip model with its preprocessing and tokenizer.

The CLIP weights never train in q16: every caller gets a model in eval mode with
``requires_grad=False`` on all parameters.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from q16.errors import Q16Error

log = logging.getLogger(__name__)

PRECISION_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
"""``model.precision`` -> the dtype images enter the image tower in."""
PRECISIONS = tuple(PRECISION_DTYPES)
TINY_MODEL = "q16-tiny"
OPENAI_TAG = "openai"
QUICKGELU_SUFFIX = "-quickgelu"


def base_model_name(name: str) -> str:
    """The architecture without open_clip's ``-quickgelu`` suffix: the same weights either way,
    so prompt files and the paper's tables name models this way."""
    return name.removesuffix(QUICKGELU_SUFFIX)


@dataclass(frozen=True)
class BackboneSpec:
    """What to load: an open_clip architecture and its weights.

    Args:
        name: open_clip model name (``ViT-L-14``, ``ViT-B-32-quickgelu``, ``q16-tiny``), or
            ``hf-hub:org/repo`` for a model published with its config on the Hugging Face hub.
        pretrained: an open_clip pretrained tag (``openai``, ``laion2b_s34b_b79k``), a local
            checkpoint path, or ``None`` for random weights (ignored for ``hf-hub:`` names).
        precision: ``fp32``, ``bf16`` or ``fp16``.
        cache_dir: where open_clip keeps downloaded weights (``None`` = its default).
        quick_gelu: OpenAI's weights were trained with QuickGELU and score wrongly without it.
            ``None`` = only for ``pretrained=openai``; set ``True`` when loading OpenAI weights
            from a local file.
    """

    name: str
    pretrained: str | None = OPENAI_TAG
    precision: str = "fp32"
    cache_dir: str | None = None
    quick_gelu: bool | None = None

    def __post_init__(self) -> None:
        if self.from_hub and self.pretrained is not None:
            # the hub repo carries its own weights; a tag inherited from a model config would
            # only mislabel them (e.g. as OpenAI's) in metadata and reports
            object.__setattr__(self, "pretrained", None)

    @property
    def quick_gelu_by_default(self) -> bool:
        """The one QuickGELU rule: OpenAI trained its CLIPs with QuickGELU, so their weights
        score wrongly without it; everyone else's (LAION, DataComp) use GELU."""
        return self.pretrained == OPENAI_TAG

    @property
    def uses_quick_gelu(self) -> bool:
        return self.quick_gelu if self.quick_gelu is not None else self.quick_gelu_by_default

    @property
    def is_openai_weights(self) -> bool:
        """The ``openai`` tag, or a local file declared a copy of OpenAI's weights
        (``quick_gelu=true``): the weights the paper's prompts were learned against."""
        if self.from_hub or not self.uses_quick_gelu:
            return False
        return self.pretrained == OPENAI_TAG or bool(
            self.pretrained and self.quick_gelu and Path(self.pretrained).expanduser().is_file()
        )

    @property
    def from_hub(self) -> bool:
        return self.name.startswith(("hf-hub:", "local-dir:"))

    @property
    def random_weights(self) -> bool:
        return self.pretrained is None and not self.from_hub

    @property
    def weights_id(self) -> str:
        """A stable identity of the weights for cache keys and prompt metadata."""
        if self.from_hub:
            weights = self.name
        elif self.pretrained is None:
            weights = "random-init"
        elif (path := Path(self.pretrained).expanduser()).is_file():
            stat = path.stat()
            weights = f"file:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        else:
            weights = self.pretrained
        if self.quick_gelu is not None and self.quick_gelu != self.quick_gelu_by_default:
            weights += "+quickgelu" if self.quick_gelu else "+gelu"
        return weights


@dataclass
class Backbone:
    """A frozen CLIP model together with everything needed to feed it."""

    spec: BackboneSpec
    model: Any  # open_clip.CLIP; Any because its towers are reached by attribute
    preprocess: Callable
    tokenizer: Callable

    @property
    def embed_dim(self) -> int:
        return int(self.model.visual.output_dim)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def preprocess_id(self) -> str:
        """Identity of the image preprocessing, for feature-cache keys."""
        return hashlib.sha256(repr(self.preprocess).encode()).hexdigest()[:16]

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Unnormalised text embeddings, float32, shape (len(texts), embed_dim)."""
        tokens = self.tokenizer(list(texts)).to(self.device)
        return self.model.encode_text(tokens).float()

    @torch.inference_mode()
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Unnormalised image embeddings, float32, from preprocessed images (cast to the
        precision's dtype: under fp16/bf16 open_clip keeps some parameters, the class and
        position embeddings among them, in float32, so no one parameter tells the input's)."""
        dtype = PRECISION_DTYPES[self.spec.precision]
        return self.model.encode_image(images.to(self.device, dtype)).float()


def pick_device(name: str) -> torch.device:
    """``auto`` = the first GPU when there is one; asking for CUDA without one is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise Q16Error(f"device={name} requested but CUDA is not available; use device=cpu")
    return torch.device(name)


def register_tiny_model() -> None:
    """Make the shipped tiny architecture known to open_clip (idempotent)."""
    import open_clip

    if TINY_MODEL in open_clip.list_models():
        return
    config = resources.files("q16.models") / "model_configs" / f"{TINY_MODEL}.json"
    with resources.as_file(config) as path:
        open_clip.add_model_config(path)


def open_clip_name(spec: BackboneSpec) -> str:
    """The open_clip config to build: its ``-quickgelu`` twin when the weights need QuickGELU."""
    import open_clip

    name = spec.name
    if spec.uses_quick_gelu and not name.endswith(QUICKGELU_SUFFIX):
        quick = f"{name}{QUICKGELU_SUFFIX}"
        if quick in open_clip.list_models():
            log.info("using %s (OpenAI weights need QuickGELU)", quick)
            return quick
    return name


def load_backbone(spec: BackboneSpec, device: str | torch.device = "cpu") -> Backbone:
    """Create the open_clip model, load weights, freeze it.

    Weights named by a tag are fetched (or found in the cache) *before* the model is built, so
    an offline machine fails in a second with a message instead of after allocating a ViT-L.

    Raises:
        Q16Error: unknown model or precision, missing local checkpoint, or weights that cannot
            be fetched (offline) — with a message that says how to fix it.
    """
    import open_clip

    register_tiny_model()
    if spec.precision not in PRECISIONS:
        raise Q16Error(f"model.precision={spec.precision!r} is not one of {', '.join(PRECISIONS)}")
    hub_model = spec.from_hub
    name = spec.name if hub_model else open_clip_name(spec)
    if not hub_model and name not in open_clip.list_models():
        raise Q16Error(
            f"unknown open_clip model {spec.name!r}; see open_clip.list_models(), or use "
            "model.name=hf-hub:org/repo for a model published on the Hugging Face hub"
        )
    pretrained = None if hub_model else _check_pretrained(name, spec.pretrained)
    if pretrained is None and not hub_model:
        log.warning(
            "model.pretrained=null: %s has RANDOM weights — scores only test the machinery "
            "or measure speed, they say nothing about images",
            name,
        )
    if pretrained is not None and not Path(pretrained).is_file():
        _fetch_weights(name, pretrained, spec.cache_dir)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name,
            pretrained=pretrained,
            precision=spec.precision,
            device=device,
            cache_dir=spec.cache_dir,
            force_quick_gelu=bool(spec.quick_gelu),
            weights_only=not (pretrained is not None and is_torchscript_archive(pretrained)),
        )
    except Exception as err:  # open_clip/hf_hub raise many types for "could not fetch"
        if not hub_model:
            raise
        raise Q16Error(_weights_error(name, spec.name, err)) from err
    model.eval().requires_grad_(False)
    tokenizer = open_clip.get_tokenizer(name)
    return Backbone(spec=spec, model=model, preprocess=preprocess, tokenizer=tokenizer)


def is_torchscript_archive(path: str | Path) -> bool:
    """OpenAI's own release files (what ``clip.load`` keeps in ``~/.cache/clip``) are TorchScript
    archives. ``torch.load(weights_only=True)`` refuses them; open_clip reads them through
    ``torch.jit.load``, which unpickles TorchScript values only, never arbitrary Python."""
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


def _fetch_weights(name: str, tag: str, cache_dir: str | None) -> None:
    import open_clip

    try:
        open_clip.download_pretrained(open_clip.get_pretrained_cfg(name, tag), cache_dir=cache_dir)
    except Exception as err:  # urllib, requests, huggingface_hub: no common base class
        raise Q16Error(_weights_error(name, tag, err)) from err


def _check_pretrained(name: str, pretrained: str | None) -> str | None:
    if pretrained is None:
        return None
    if pretrained.startswith("hf-hub:"):
        raise Q16Error(
            f"model.pretrained={pretrained!r}: a hub model is named by its config, pass "
            f"model.name={pretrained} (model.pretrained is then ignored)"
        )
    path = Path(pretrained).expanduser()
    if path.is_file():
        return str(path)
    looks_like_path = os.sep in pretrained or path.suffix in {".pt", ".bin", ".pth", ".safetensors"}
    if looks_like_path:
        raise Q16Error(f"model.pretrained={pretrained!r}: no such checkpoint file")
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(name)
    if pretrained not in tags:
        raise Q16Error(
            f"model.pretrained={pretrained!r} is not a known tag for {name} "
            f"(known: {', '.join(tags) or 'none'}); or pass a local checkpoint path"
        )
    return pretrained


def _weights_error(name: str, pretrained: str, err: Exception) -> str:
    text = str(err).strip()
    reason = text.splitlines()[0].split(". Last error")[0] if text else type(err).__name__
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    return (
        f"could not load weights {name} pretrained={pretrained!r}"
        f"{' (HF_HUB_OFFLINE=1)' if offline else ''}: {reason[:200]}. "
        "Without internet, download the checkpoint on another machine and pass "
        "model.pretrained=/path/to/open_clip_model.safetensors"
    )
