"""The fast scoring path for saved embeddings gives the heads' own numbers.

Cosine heads are scored in one stacked product (``CosineBank``), float16 blocks are converted
into a reused buffer, two-class probabilities come from a sigmoid, and blocks are read ahead
on a thread: each of these must leave every score, and the order of batches, as it was.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from q16.inference.cosines import CosineBank
from q16.inference.read_ahead import read_ahead
from q16.inference.scorer import Scorer, inappropriate_probability
from q16.models.concepts import ConceptHead
from q16.models.prompts import ClassEmbeddingHead, LinearProbe

D = 32


def _features(n: int = 1500, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, D, generator=g) * 3.0  # unnormalised, as the image tower gives them
    x[7] = 0.0  # a zero row: zero cosines, never NaN
    return x


def _heads(seed: int = 1) -> dict[str, torch.nn.Module]:
    g = torch.Generator().manual_seed(seed)
    concepts = ConceptHead(
        torch.randn(3, D, generator=g),
        {"violence": torch.randn(4, D, generator=g), "drugs": torch.randn(2, D, generator=g)},
    )
    return {
        "q16": ClassEmbeddingHead(torch.randn(2, D, generator=g), trainable=False),
        "violence": concepts.category("violence"),
        "any": concepts,
    }


def _scorer(heads: dict[str, torch.nn.Module]) -> Scorer:
    backbone = SimpleNamespace(device=torch.device("cpu"))
    first = next(iter(heads.values()))
    return Scorer(backbone, first, (0.0,), (1.0,), heads=heads)  # type: ignore[arg-type]


def test_one_product_gives_every_cosine_head_its_own_logits() -> None:
    heads = list(_heads().values())
    bank = CosineBank.of(heads)
    assert bank is not None
    x = _features()
    for head, logits in zip(heads, bank.logits(x), strict=True):
        torch.testing.assert_close(logits, head(x), rtol=1e-5, atol=1e-4)
    assert all(torch.isfinite(lg[7]).all() for lg in bank.logits(x))


def test_a_head_that_is_not_a_cosine_head_is_scored_on_its_own() -> None:
    torch.manual_seed(0)
    heads = {**_heads(), "probe": LinearProbe(D)}
    assert CosineBank.of(list(heads.values())) is None
    scores = _scorer(heads).score_features(_features())
    expected = heads["probe"](_features()).softmax(-1)[:, 1]
    torch.testing.assert_close(scores.heads["probe"], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_scores_equal_each_heads_softmax_for_float16_and_float32_blocks(
    dtype: torch.dtype,
) -> None:
    heads = _heads()
    x = _features().to(dtype)
    scores = _scorer(heads).score_features(x)
    for name, head in heads.items():
        expected = head(x.float()).softmax(-1)[:, 1]
        torch.testing.assert_close(scores.heads[name], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scores.p_inappropriate, scores.heads["q16"])
    # the buffer is reused between chunks: kept embeddings are the input, not the last chunk
    kept = _scorer(heads).score_features(x, keep=True).embeddings
    assert kept is not None
    torch.testing.assert_close(kept, x.float())


def test_two_class_probability_is_the_softmax() -> None:
    logits = torch.tensor([[0.0, 0.0], [50.0, -50.0], [-3.0, 4.0], [1e4, -1e4]])
    torch.testing.assert_close(inappropriate_probability(logits), logits.softmax(-1)[:, 1])
    three = torch.randn(5, 3)
    torch.testing.assert_close(inappropriate_probability(three), three.softmax(-1)[:, 1])


def test_read_ahead_keeps_order_and_raises_the_readers_error() -> None:
    assert list(read_ahead(range(100), depth=3)) == list(range(100))

    def broken():  # type: ignore[no-untyped-def]
        yield 1
        yield 2
        raise OSError("disk went away")

    got = []
    with pytest.raises(OSError, match="disk went away"):
        for item in read_ahead(broken()):
            got.append(item)
    assert got == [1, 2]


def test_read_ahead_stops_its_thread_when_the_consumer_stops() -> None:
    def endless():  # type: ignore[no-untyped-def]
        i = 0
        while True:
            yield i
            i += 1

    before = threading.active_count()
    stream = read_ahead(endless(), depth=2)
    assert next(stream) == 0
    stream.close()  # what a scoring error does to the loop's generator
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before


def test_zero_row_gives_half_not_nan() -> None:
    unit = F.normalize(torch.randn(2, D), dim=-1)
    head = ClassEmbeddingHead(unit, trainable=False)
    scores = _scorer({"q16": head}).score_features(torch.zeros(3, D, dtype=torch.float16))
    assert torch.equal(scores.p_inappropriate, torch.full((3,), 0.5))


@pytest.mark.parametrize("n_heads", [1, 4])
@pytest.mark.parametrize("given_norms", [False, True])
def test_float16_blocks_score_within_1e_4_of_float64(n_heads: int, given_norms: bool) -> None:
    """768-d unit float16 rows (a LAION collection) and the paper's scale: the fast product
    ((K, D) x (D, N)) and norms handed over by the reader leave p within 1e-4 of float64."""
    g = torch.Generator().manual_seed(5)
    x = F.normalize(torch.randn(3000, 768, generator=g), dim=-1).half()
    x[11] = 0.0
    rows = [torch.randn(2, 768, generator=g) for _ in range(n_heads)]
    heads = {f"h{i}": ClassEmbeddingHead(r, trainable=False) for i, r in enumerate(rows)}
    norms = x.float().norm(dim=1) if given_norms else None
    scores = _scorer(heads).score_features(x, norms=norms)
    x64 = x.double()
    unit = x64 / x64.norm(dim=1, keepdim=True).clamp_min(1e-12)
    for name, r in zip(heads, rows, strict=True):
        scale = float(heads[name].logit_scale)
        cos = unit @ F.normalize(r.double(), dim=-1).T
        expected = (scale * cos).softmax(-1)[:, 1]
        gap = (scores.heads[name].double() - expected).abs().max()
        assert gap <= 1e-4, (name, float(gap))
