"""Carry the paper's released prompts and published SMID figures into the package, once.

    python scripts/convert_paper_assets.py /path/to/reference   # folder with q16_prompts/*.p
                                                                # and q16_smid_reference.csv

Writes ``src/q16/paper/``: ``prompts/<model>.safetensors`` (q16's prompt format, the paper's
float16 rows stored exactly as float32, with source, license and the original's sha256 in the
metadata), ``q16_smid_reference.csv`` (byte-for-byte) and ``PROVENANCE.json`` listing every file
with its origin. The originals are the MIT-licensed releases of the repository ml-research/Q16
(Schramowski, Tauchmann, Kersting, FAccT 2022). Re-running on the same inputs gives the same files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

from q16 import CLASS_NAMES
from q16.models.prompt_io import PAPER_LOGIT_SCALE, PromptMetadata, load_prompt, save_prompt
from q16.models.prompts import ClassEmbeddingHead

OUT = Path(__file__).resolve().parents[1] / "src" / "q16" / "paper"
SOURCE = "ml-research/Q16"
LICENSE = "MIT"
COPYRIGHT = (
    "the authors of ml-research/Q16 (P. Schramowski, C. Tauchmann, K. Kersting), "
    "released under the MIT license, https://github.com/ml-research/Q16"
)
PAPER = (
    "Schramowski, Tauchmann, Kersting: Can Machines Help Us Answering Question 16 in Datasheets, "
    "and In Turn Reflecting on Inappropriate Content? FAccT 2022"
)
MODELS = ("ViT-B-16", "ViT-B-32", "ViT-L-14")
REFERENCE_CSV = "q16_smid_reference.csv"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def convert_prompt(original: Path, model: str, out: Path) -> dict[str, str]:
    head, _ = load_prompt(original)  # the restricted unpickler: numpy arrays only
    assert isinstance(head, ClassEmbeddingHead)
    digest = sha256(original)
    meta = PromptMetadata(
        kind=ClassEmbeddingHead.kind,
        embed_dim=head.embed_dim,
        model=model,
        pretrained="openai",
        class_names=list(CLASS_NAMES),
        logit_scale=PAPER_LOGIT_SCALE,
        source=SOURCE,
        extra={
            "license": LICENSE,
            "copyright": COPYRIGHT,
            "paper": PAPER,
            "original_file": f"{model}.p",
            "original_sha256": digest,
            "original_dtype": "float16",
            "class_order": "row 0 appropriate, row 1 inappropriate",
        },
    )
    frozen = ClassEmbeddingHead(head.class_embeddings.detach().clone(), trainable=False)
    save_prompt(out, frozen, meta)
    return {"file": f"prompts/{out.name}", "original": f"{model}.p", "original_sha256": digest}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", type=Path, help="folder with q16_prompts/ and the CSV")
    args = parser.parse_args(argv)
    prompts_in = args.reference / "q16_prompts"
    missing = [m for m in MODELS if not (prompts_in / f"{m}.p").is_file()]
    if missing or not (args.reference / REFERENCE_CSV).is_file():
        print(
            f"convert_paper_assets: {args.reference} lacks {missing or REFERENCE_CSV}",
            file=sys.stderr,
        )
        return 2
    (OUT / "prompts").mkdir(parents=True, exist_ok=True)
    files = [
        convert_prompt(prompts_in / f"{m}.p", m, OUT / "prompts" / f"{m}.safetensors")
        for m in MODELS
    ]
    shutil.copyfile(args.reference / REFERENCE_CSV, OUT / REFERENCE_CSV)
    files.append(
        {
            "file": REFERENCE_CSV,
            "original": REFERENCE_CSV,
            "original_sha256": sha256(args.reference / REFERENCE_CSV),
        }
    )
    provenance = {
        "source": SOURCE,
        "license": LICENSE,
        "copyright": COPYRIGHT,
        "paper": PAPER,
        "made_by": "python scripts/convert_paper_assets.py <reference folder>",
        "files": files,
    }
    (OUT / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(f"wrote {len(files)} files to {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
