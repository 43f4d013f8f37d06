"""data.decode=gpu: workers ship checked JPEG bytes, the batch is decoded where it is scored.

Everything but nvJPEG runs here with ``device="cpu"`` (libjpeg-turbo through the same
``decode_jpeg(list, device=...)`` call); the CUDA test compares nvJPEG with PIL on photographs.
"""

from __future__ import annotations

import io
import warnings

import pytest
import torch
from PIL import Image

from q16.imageload import open_checked
from q16.inference import gpu_decode
from q16.inference.gpu_decode import BatchDecoder
from q16.pixels import DecodeError, ImageDecoder, UInt8Preprocess

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import skimage.data


def jpeg(name: str, size: tuple[int, int], **options: object) -> bytes:
    out = io.BytesIO()
    image = Image.fromarray(getattr(skimage.data, name)()).resize(size, Image.Resampling.BICUBIC)
    image.save(out, "JPEG", quality=95, **options)
    return out.getvalue()


def png(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.fromarray(skimage.data.coffee()).resize(size).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def preprocess() -> UInt8Preprocess:
    import open_clip

    return UInt8Preprocess.from_transform(open_clip.image_transform(224, is_train=False))


def batch() -> list[bytes]:
    """Two ImageNet-like JPEGs of one size (one resize call), a portrait, a grayscale JPEG, a
    progressive one and a PNG (decoded in the worker)."""
    return [
        jpeg("astronaut", (500, 375)),
        jpeg("chelsea", (500, 375)),
        jpeg("coffee", (375, 500)),
        jpeg("camera", (341, 256)),
        jpeg("rocket", (320, 240), progressive=True),
        png((200, 150)),
    ]


def test_workers_ship_jpegs_encoded_and_decode_the_rest(preprocess: UInt8Preprocess) -> None:
    worker = ImageDecoder(preprocess, mode="gpu")
    shipped = [worker.for_batch(x) for x in batch()]
    assert [t.dim() for t in shipped] == [1, 1, 1, 1, 1, 3]
    assert bytes(shipped[0].numpy()) == batch()[0]
    assert shipped[5].dtype == torch.uint8 and shipped[5].shape == (3, 224, 224)
    # alone (the training cache, a benchmark), decode=gpu decodes as fast does
    fast = ImageDecoder(preprocess, mode="fast")
    assert torch.equal(worker(batch()[0]), fast(batch()[0]))


def test_header_checks_stay_in_the_worker(preprocess: UInt8Preprocess) -> None:
    worker = ImageDecoder(preprocess, mode="gpu", max_pixels=500 * 374)
    with pytest.raises(DecodeError, match="decompression bomb"):
        worker.for_batch(batch()[0])
    with pytest.raises(DecodeError, match="not an image of a format"):
        worker.for_batch(b"%!PS-Adobe-3.0 EPSF-3.0\n")


def test_batch_decoded_on_the_device_as_the_fast_path(preprocess: UInt8Preprocess) -> None:
    """On the CPU device the batch gives the fast path's pixels, row for row, in order."""
    worker = ImageDecoder(preprocess, mode="gpu")
    decoded = BatchDecoder(preprocess, torch.device("cpu")).decode(
        [worker.for_batch(x) for x in batch()]
    )
    fast = ImageDecoder(preprocess, mode="fast")
    expected = torch.stack([fast(x) for x in batch()])
    assert decoded.kept == list(range(6)) and not decoded.fallbacks and not decoded.errors
    assert decoded.images.dtype == torch.uint8 and decoded.images.shape == (6, 3, 224, 224)
    assert torch.equal(decoded.images, expected)


def test_a_jpeg_the_device_refuses_is_decoded_on_the_cpu(
    preprocess: UInt8Preprocess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nvJPEG failing one image fails the batched call: each is then decoded alone, and the one
    refused goes to the CPU decoder (PIL): recorded as a fallback, never lost."""
    data = batch()
    refused = data[2]
    real = gpu_decode.decode_jpeg

    def picky(inputs, **kwargs):  # type: ignore[no-untyped-def]
        items = inputs if isinstance(inputs, list) else [inputs]
        if any(bytes(x.numpy()) == refused for x in items):
            raise RuntimeError("nvjpeg: unsupported JPEG")
        return real(inputs, **kwargs)

    monkeypatch.setattr(gpu_decode, "decode_jpeg", picky)
    worker = ImageDecoder(preprocess, mode="gpu")
    decoded = BatchDecoder(preprocess, torch.device("cpu")).decode(
        [worker.for_batch(x) for x in data]
    )
    assert decoded.kept == list(range(6)) and not decoded.errors
    assert decoded.fallbacks == [(2, "the cpu JPEG decoder refused it")]
    assert torch.equal(decoded.images[2], ImageDecoder(preprocess, mode="pil")(refused))


def test_a_jpeg_nobody_decodes_is_dropped_with_its_reason(preprocess: UInt8Preprocess) -> None:
    good = batch()[0]
    cut = good[: len(good) // 2]  # the header passes the worker's checks; the pixels are gone
    assert ImageDecoder(preprocess, mode="gpu").for_batch(cut).dim() == 1
    decoded = BatchDecoder(preprocess, torch.device("cpu")).decode([good, cut, good])
    assert decoded.kept == [0, 2] and len(decoded.images) == 2
    ((row, reason),) = decoded.errors
    assert row == 1 and "truncated" in reason
    assert open_checked(cut).size == (500, 375)


@pytest.mark.gpu
def test_nvjpeg_batch_matches_pil_on_photographs(preprocess: UInt8Preprocess) -> None:
    """nvJPEG's IDCT and the float resize on CUDA differ from PIL by rounding only."""
    worker = ImageDecoder(preprocess, mode="gpu")
    decoded = BatchDecoder(preprocess, torch.device("cuda")).decode(
        [worker.for_batch(x) for x in batch()]
    )
    assert decoded.images.device.type == "cuda" and not decoded.fallbacks
    pil = torch.stack([ImageDecoder(preprocess, mode="pil")(x) for x in batch()])
    gap = (decoded.images.cpu().int() - pil.int()).abs().float()
    assert gap.mean() < 1.0, float(gap.mean())
