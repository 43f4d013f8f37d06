"""Every inference source keeps the written contract (``q16.sources.base``), and the sources
and the report stand on their own (no inference or model code imported)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from collections_layout import clip_retrieval_folder, datacomp_folder
from PIL import Image

from q16.errors import Q16Error
from q16.infer import check_embeddings
from q16.models.backbone import Backbone
from q16.outdir import EMBEDDINGS_DIR, EMBEDDINGS_META_FILE
from q16.sources.base import (
    BlockSource,
    EmbeddingSource,
    EmbeddingSpace,
    ErrorLog,
    InferenceSource,
    SampleSource,
    is_remote,
)
from q16.sources.clip_retrieval import ClipRetrievalEmbeddings
from q16.sources.datacomp import DataCompShards
from q16.sources.embeddings import SavedEmbeddings
from q16.sources.folder import ImageFolder
from q16.sources.wds import WebDatasetShards, synthetic_images, write_shards


def saved_embeddings(root: Path, **meta: object) -> SavedEmbeddings:
    (root / EMBEDDINGS_DIR).mkdir(parents=True)
    (root / EMBEDDINGS_DIR / EMBEDDINGS_META_FILE).write_text(json.dumps(meta))
    return SavedEmbeddings(str(root))


def image_sources(tmp_path: Path) -> list[InferenceSource]:
    """One of each source of images; a new one joins the contract test with one line here."""
    write_shards(synthetic_images(2), str(tmp_path / "wds" / "s-%04d.tar"), maxcount=2)
    (tmp_path / "imgs" / "n00000001").mkdir(parents=True)
    Image.new("RGB", (9, 9)).save(tmp_path / "imgs" / "n00000001" / "a.png")
    return [WebDatasetShards(str(tmp_path / "wds")), ImageFolder(str(tmp_path / "imgs"))]


def embedding_sources(tmp_path: Path) -> list[InferenceSource]:
    """One of each source of precomputed embeddings (clip-retrieval, DataComp: one line each)."""
    return [
        saved_embeddings(tmp_path / "emb", model="m", weights="w", embed_dim=4),
        ClipRetrievalEmbeddings(str(clip_retrieval_folder(tmp_path / "cr", [2]))),
        DataCompShards(str(datacomp_folder(tmp_path / "dc", [2])), model="ViT-B-32"),
    ]


def test_every_source_is_an_inference_source(tmp_path: Path) -> None:
    images, embeddings = image_sources(tmp_path), embedding_sources(tmp_path)
    assert all(isinstance(s, InferenceSource) for s in images + embeddings)
    assert not any(isinstance(s, EmbeddingSource) for s in images)
    assert all(isinstance(s, EmbeddingSource) for s in embeddings)
    # images are read a sample at a time, embeddings a block at a time (one rule set each)
    assert all(isinstance(s, SampleSource) and not isinstance(s, BlockSource) for s in images)
    assert all(isinstance(s, BlockSource) and not isinstance(s, SampleSource) for s in embeddings)
    for source in images:
        shards = source.list_shards()
        errors = ErrorLog(shards[0].name)
        samples = list(source.iter_samples(shards[0], errors))
        assert samples and all(s.data for s in samples) and not errors.records
        assert isinstance(source.name, str) and source.name


def test_saved_embeddings_say_which_encoder_made_them(tmp_path: Path) -> None:
    source = saved_embeddings(
        tmp_path, model="ViT-B-32", pretrained="openai", weights="w", embed_dim=4
    )
    space = source.embedding_space()
    assert space == EmbeddingSpace("ViT-B-32", "openai", "w", 4)
    assert space.matches(weights="w", embed_dim=4)
    assert not space.matches(weights="w", embed_dim=8)
    assert not space.matches(weights="other", embed_dim=4)
    with pytest.raises(Q16Error, match=r"infer\.save_embeddings=true"):
        SavedEmbeddings(str(tmp_path / "nothing")).embedding_space()


def test_embeddings_of_another_model_are_refused(tmp_path: Path, tiny_backbone: Backbone) -> None:
    spec = tiny_backbone.spec
    same = saved_embeddings(
        tmp_path / "a", weights=spec.weights_id, embed_dim=tiny_backbone.embed_dim
    )
    check_embeddings(same, tiny_backbone)
    other = saved_embeddings(
        tmp_path / "b", model="ViT-L-14", pretrained="openai", weights="x", embed_dim=768
    )
    with pytest.raises(Q16Error, match="model=ViT-L-14 pretrained=openai; pass the same model"):
        check_embeddings(other, tiny_backbone)
    check_embeddings(image_sources(tmp_path / "c")[0], tiny_backbone)  # images: nothing to check


def test_saved_embeddings_read_back_rows_and_vectors(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = saved_embeddings(tmp_path, weights="w", embed_dim=2)
    np.save(tmp_path / EMBEDDINGS_DIR / "s.npy", np.eye(2, dtype=np.float32))
    (tmp_path / "scores").mkdir()
    pq.write_table(
        pa.table({"key": ["a", "b"], "class_id": [1, -1]}), tmp_path / "scores/s.parquet"
    )
    np.save(tmp_path / EMBEDDINGS_DIR / "unfinished.npy", np.eye(2, dtype=np.float32))
    shards = source.list_shards()
    assert [s.name for s in shards] == ["s"]  # only shards whose scores are done
    (block,) = source.iter_blocks(shards[0], ErrorLog("s"))
    assert block.keys.to_pylist() == ["a", "b"] and not block.unit
    assert block.fields["class_id"].to_pylist() == [1, -1]
    assert np.asarray(block.features).tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_remote_specs_are_never_resolved() -> None:
    assert is_remote("s3://bucket/x.tar") and is_remote("pipe:curl -s http://x/y.tar")
    assert not is_remote("/data/x.tar") and not is_remote("relative/x.tar")


def test_sources_and_report_import_no_inference_or_model_code() -> None:
    """The layering: sources and the report read the out_dir contract (q16.outdir), never the
    inference package that writes it."""
    code = (
        "import sys, q16.sources.base, q16.sources.wds, q16.sources.folder, "
        "q16.sources.embeddings, q16.sources.classnames, q16.report, q16.review, q16.cli; "
        "print(sorted(m for m in sys.modules if m.startswith(('q16.inference', 'q16.models'))))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"
