"""Encode a concept set once with CLIP's text tower, so embedding runs need no text tower.

    python scripts/encode_concepts.py configs/concepts/example.yaml --model ViT-L-14 \
        --pretrained openai --out concepts.safetensors

The file holds one normalised embedding per phrase (``neutral`` and ``category.<name>``) and
records the model and weights, so infer.py refuses it with another model. Use it as a
``heads:`` entry (``{name: violence, prompt: concepts.safetensors}``; the category is the
head's name) or as ``prompt.path`` (an image then scores by its best category).
``--pretrained none`` = random weights (tests, the tiny model), seeded with ``--seed`` as
infer.py seeds them (``seed``), so the two encode the same phrases identically.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from pathlib import Path

import lightning as L

from q16.errors import Q16Error, exit_on_user_error
from q16.models.backbone import BackboneSpec, load_backbone
from q16.models.concepts import CONCEPT_LOGIT_SCALE, encode_concept_set, read_concept_set
from q16.models.prompt_io import PromptMetadata, save_prompt


def encode(
    concepts: Path, spec: BackboneSpec, out: Path, seed: int = 0, device: str = "cpu"
) -> Path:
    """Read, encode and save; every user problem is one Q16Error."""
    parsed = read_concept_set(concepts)  # checked before a model is loaded
    if out.suffix.lower() != ".safetensors":
        raise Q16Error(f"--out {out.name!r}: write a .safetensors file")
    L.seed_everything(seed, verbose=False)
    backbone = load_backbone(spec, device)
    head = encode_concept_set(backbone, parsed)
    extra = {
        **head.export_metadata(),
        "concepts_file": concepts.name,
        "concepts_sha256": hashlib.sha256(concepts.read_bytes()).hexdigest(),
    }
    meta = PromptMetadata(
        kind=head.kind,
        embed_dim=head.embed_dim,
        model=spec.name,
        pretrained=spec.pretrained,
        logit_scale=CONCEPT_LOGIT_SCALE,
        extra=extra,
    )
    return save_prompt(out, head, meta)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("concepts", type=Path, help="a concept-set YAML (neutral:, categories:)")
    parser.add_argument("--model", required=True, help="open_clip model (ViT-L-14, q16-tiny)")
    parser.add_argument("--pretrained", default="openai", help="tag or checkpoint; none=random")
    parser.add_argument("--quick-gelu", action="store_true", help="local copy of OpenAI weights")
    parser.add_argument("--out", type=Path, required=True, help="the .safetensors to write")
    parser.add_argument("--seed", type=int, default=0, help="for random weights (as infer.py)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    pretrained = None if args.pretrained.lower() in ("none", "null") else args.pretrained
    with exit_on_user_error():
        spec = BackboneSpec(args.model, pretrained, quick_gelu=args.quick_gelu or None)
        print(f"concepts: {encode(args.concepts, spec, args.out, args.seed, args.device)}")


if __name__ == "__main__":
    main()
