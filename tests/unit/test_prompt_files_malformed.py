"""Malformed prompt files are refused at load with one line, whatever is wrong with them."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from q16.errors import Q16Error
from q16.models.prompt_io import PromptMetadata, load_prompt

D = 16


def _meta(**fields: object) -> dict[str, str]:
    base = {"kind": "class_embeddings", "embed_dim": D}
    return {"q16": json.dumps({**base, **fields})}


def _safetensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Callable:
    def write(path: Path) -> Path:
        path = path / "p.safetensors"
        save_file(tensors, str(path), metadata=metadata)
        return path

    return write


def _npy(array: np.ndarray) -> Callable:
    def write(path: Path) -> Path:
        np.save(path / "p.npy", array)
        return path / "p.npy"

    return write


def _pickle(array: np.ndarray) -> Callable:
    def write(path: Path) -> Path:
        (path / "p.p").write_bytes(pickle.dumps(array))
        return path / "p.p"

    return write


def _bytes(name: str, data: bytes) -> Callable:
    def write(path: Path) -> Path:
        (path / name).write_bytes(data)
        return path / name

    return write


GOOD = torch.randn(2, D)
ONE_INF = np.random.default_rng(0).normal(size=(2, D)).astype(np.float32)
ONE_INF[1, 3] = np.inf

CASES = {
    "npy of NaN": (_npy(np.full((2, D), np.nan, np.float32)), "non-finite"),
    "npy with one Inf": (_npy(ONE_INF), "1 non-finite"),
    "float64 beyond float32": (_npy(np.full((2, D), 1e300)), "non-finite"),
    "npy of strings": (_npy(np.array([["a"] * D, ["b"] * D])), "expected a float array"),
    "pickle of strings": (_pickle(np.array([["a"] * D, ["b"] * D])), "expected a float array"),
    "complex npy": (_npy(np.ones((2, D), np.complex64)), "expected a float array"),
    "one-class npy": (_npy(np.ones((1, D), np.float32)), "shape (2, D)"),
    "zero row": (_npy(np.vstack([np.ones(D), np.zeros(D)]).astype(np.float32)), "all zeros"),
    "truncated npy": (_bytes("p.npy", b"\x93NUMPY\x01\x00"), "not a plain numpy array"),
    "garbage pickle": (_bytes("p.p", b"\x80\x05garbage"), "refused to unpickle"),
    "truncated safetensors": (_bytes("p.safetensors", b"\x08\x00\x00"), "not a readable"),
    "metadata not JSON": (
        _safetensors({"class_embeddings": GOOD}, {"q16": "{not json"}),
        "bad q16 metadata",
    ),
    "metadata without embed_dim": (
        _safetensors({"class_embeddings": GOOD}, {"q16": json.dumps({"kind": "linear"})}),
        "bad q16 metadata",
    ),
    "metadata with unknown field": (
        _safetensors({"class_embeddings": GOOD}, _meta(colour="red")),
        "bad q16 metadata",
    ),
    "metadata embed_dim a string": (
        _safetensors({"class_embeddings": GOOD}, _meta(embed_dim="16")),
        "embed_dim must be an integer",
    ),
    "metadata NaN logit scale": (
        _safetensors({"class_embeddings": GOOD}, _meta(logit_scale=float("nan"))),
        "logit_scale must be a positive finite",
    ),
    "classes swapped": (
        _safetensors(
            {"class_embeddings": GOOD}, _meta(class_names=["inappropriate", "appropriate"])
        ),
        "inverted",
    ),
    "missing tensor": (_safetensors({"other": GOOD}, _meta()), "missing or bad tensors"),
    "width not the metadata's": (
        _safetensors({"class_embeddings": torch.randn(2, 8)}, _meta()),
        "tensors are 8 wide but the metadata says embed_dim=16",
    ),
    "one-class tensor": (
        _safetensors({"class_embeddings": torch.randn(1, D)}, _meta()),
        "gives 1 class score(s) per image, expected 2",
    ),
    "one-class linear probe": (
        _safetensors({"weight": torch.randn(1, D), "bias": torch.zeros(1)}, _meta(kind="linear")),
        "expected 2",
    ),
    "integer tensor": (
        _safetensors({"class_embeddings": torch.ones(2, D, dtype=torch.int32)}, _meta()),
        "expected floats",
    ),
    "NaN safetensors": (
        _safetensors({"class_embeddings": torch.full((2, D), float("nan"))}, _meta()),
        "non-finite",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_prompt_file_is_one_line_at_load(tmp_path: Path, case: str) -> None:
    write, expected = CASES[case]
    with pytest.raises(Q16Error) as info:
        load_prompt(write(tmp_path))
    message = str(info.value)
    assert expected in message and "\n" not in message, message


def test_wrong_embedding_width_for_the_model(tmp_path: Path) -> None:
    path = _npy(np.ones((2, D), np.float32))(tmp_path)
    with pytest.raises(Q16Error, match=f"prompt embedding dim {D} does not match the model's 64"):
        load_prompt(path, embed_dim=64)


def test_good_files_still_load(tmp_path: Path) -> None:
    head, meta = load_prompt(_npy(np.ones((2, D), np.float16))(tmp_path))
    assert meta.embed_dim == D and head(torch.randn(4, D)).shape == (4, 2)
    meta = PromptMetadata(kind="class_embeddings", embed_dim=D)
    save_file({"class_embeddings": GOOD}, str(tmp_path / "ok.safetensors"), meta.to_strings())
    assert load_prompt(tmp_path / "ok.safetensors")[1].embed_dim == D
