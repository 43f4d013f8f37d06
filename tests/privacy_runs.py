"""Scored runs with a faces head, made through the real reader -> scorer -> writer loop, for
the release and removal tests (summary.json as the run writes its ``heads`` entries)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from PIL import Image

from q16.inference.collect import collect
from q16.inference.loop import score_shards
from q16.inference.pixel_heads import PixelHeads
from q16.inference.reader import ImageDecoder, UInt8Preprocess
from q16.inference.scorer import Scorer
from q16.inference.settings import parse_heads
from q16.inference.writer import ShardWriter
from q16.models.backbone import Backbone
from q16.models.prompts import class_embedding_prompt
from q16.outdir import SUMMARY_FILE

FACES = [{"name": "q16", "prompt": "zeroshot"}, {"name": "faces", "detector": "centerface"}]


def score(
    source, out: Path, backbone: Backbone, hashes: bool = False, embeddings: bool = False
) -> Path:
    pixel = PixelHeads.build(parse_heads(FACES), "cpu", hashes=hashes)
    preprocess = UInt8Preprocess.from_transform(backbone.preprocess)
    head = class_embedding_prompt(backbone, trainable=False)
    thresholds = (("q16", 0.9), *pixel.thresholds())
    scorer = Scorer(backbone, head, preprocess.mean, preprocess.std, heads={"q16": head})
    meta = tuple(getattr(source, "meta_columns", None) or ())
    writer = ShardWriter(
        out, 0.9, embeddings, heads=thresholds, pixel_fields=pixel.fields(), background=False,
        meta_columns=meta,
    )  # fmt: skip
    shards = source.list_shards()
    score_shards(
        source, shards, scorer, writer, decoder=ImageDecoder(preprocess), batch_size=4,
        num_workers=0, pixel=pixel,
    )  # fmt: skip
    counts = collect(
        out, [s.name for s in shards], threshold=0.9, heads=thresholds, unlisted=pixel.unlisted()
    )
    summary = {
        "images_scored": counts.images_scored,
        "heads": [{"name": "q16", "prompt_source": "zeroshot"}, *pixel.summary()],
        "model": backbone.spec.name,
        "pretrained": backbone.spec.pretrained,
        "random_weights": True,
    }
    (out / SUMMARY_FILE).write_text(json.dumps(summary))
    return out


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def encode(pixels, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()
