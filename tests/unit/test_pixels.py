"""The fast JPEG path (libjpeg-turbo + tensor resize) against the PIL path, on real photographs:
same decoded pixels, within a level or two after resizing, the same refusals and errors."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from q16.errors import Q16Error
from q16.imageload import open_checked
from q16.models.backbone import Backbone
from q16.pixels import DecodeError, Geometry, ImageDecoder, UInt8Preprocess, decode_jpeg_rgb

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import skimage.data


def jpeg(image: Image.Image, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", **options)
    return out.getvalue()


def photo(name: str = "astronaut", size: tuple[int, int] | None = (500, 375)) -> Image.Image:
    image = Image.fromarray(getattr(skimage.data, name)())
    return image.resize(size, Image.Resampling.BICUBIC) if size else image


@pytest.fixture(scope="module")
def preprocess() -> UInt8Preprocess:
    """ViT-B-32's preprocessing as open_clip builds it (resize 224 bicubic, crop 224)."""
    import open_clip

    return UInt8Preprocess.from_transform(open_clip.image_transform(224, is_train=False))


def both(preprocess: UInt8Preprocess, **options: object) -> tuple[ImageDecoder, ImageDecoder]:
    return (
        ImageDecoder(preprocess, mode="fast", **options),  # type: ignore[arg-type]
        ImageDecoder(preprocess, mode="pil", **options),  # type: ignore[arg-type]
    )


JPEGS = {
    "imagenet-like 500x375 q95": lambda: jpeg(photo(), quality=95),
    "img2dataset-like 341x256": lambda: jpeg(photo("coffee", (341, 256)), quality=95),
    "progressive": lambda: jpeg(photo("chelsea"), quality=90, progressive=True),
    "4:4:4": lambda: jpeg(photo(size=None), quality=90, subsampling=0),
    "grayscale": lambda: jpeg(photo("camera", None), quality=90),
    "tiny 16x12 (upscaled)": lambda: jpeg(photo(size=(16, 12)), quality=90),
    "portrait 256x512": lambda: jpeg(photo(size=None).crop((128, 0, 384, 512)), quality=90),
    "large 3000x2000": lambda: jpeg(photo("chelsea", (3000, 2000)), quality=90),
}


@pytest.mark.parametrize("name", JPEGS)
def test_fast_path_decodes_as_pil_and_resizes_within_two_levels(
    preprocess: UInt8Preprocess, name: str
) -> None:
    data = JPEGS[name]()
    fast, pil = both(preprocess)
    opened = open_checked(data)
    assert fast.takes_fast_path(opened) and not pil.takes_fast_path(opened)
    decoded = decode_jpeg_rgb(data, opened.size)
    assert decoded is not None
    with Image.open(io.BytesIO(data)) as image:
        reference = np.asarray(image.convert("RGB"))
    # libjpeg-turbo through torchvision and through PIL: the very same pixels
    np.testing.assert_array_equal(decoded.permute(1, 2, 0).numpy(), reference)
    got, expected = fast(data), pil(data)
    assert got.dtype == expected.dtype == torch.uint8 and got.shape == expected.shape
    gap = (got.int() - expected.int()).abs()
    assert gap.max() <= 2 and gap.float().mean() < 0.02, (gap.max(), gap.float().mean())


def test_fast_path_differs_from_pil_only_by_rounding(preprocess: UInt8Preprocess) -> None:
    """Negative control: the comparison above notices a real change (a one-pixel shift)."""
    data = JPEGS["imagenet-like 500x375 q95"]()
    fast, pil = both(preprocess)
    shifted = torch.roll(fast(data), 1, dims=2)
    assert (shifted.int() - pil(data).int()).abs().float().mean() > 0.5


@pytest.mark.parametrize(
    "mode,fmt", [("RGB", "PNG"), ("RGBA", "PNG"), ("P", "GIF"), ("RGB", "WEBP"), ("CMYK", "JPEG")]
)
def test_other_inputs_take_the_pil_path_exactly(
    preprocess: UInt8Preprocess, mode: str, fmt: str
) -> None:
    out = io.BytesIO()
    photo(size=(120, 90)).convert(mode).save(out, fmt)
    fast, pil = both(preprocess)
    assert not fast.takes_fast_path(open_checked(out.getvalue()))
    assert torch.equal(fast(out.getvalue()), pil(out.getvalue()))


def exif_rotated(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return jpeg(photo(size=(300, 200)), quality=90, exif=exif.tobytes())


def test_exif_orientation_as_configured(preprocess: UInt8Preprocess) -> None:
    data = exif_rotated(6)  # rotate 270: a landscape photo stored for a portrait view
    fast, pil = both(preprocess, exif_transpose=True)
    assert not fast.takes_fast_path(open_checked(data))  # rotated: PIL's exif_transpose
    assert torch.equal(fast(data), pil(data))
    ignoring, ignoring_pil = both(preprocess)  # the reference recipe ignores EXIF
    assert ignoring.takes_fast_path(open_checked(data))
    assert (ignoring(data).int() - ignoring_pil(data).int()).abs().max() <= 2
    assert (ignoring(data).int() - fast(data).int()).abs().float().mean() > 5
    upright = exif_rotated(1)
    assert fast.takes_fast_path(open_checked(upright))


def test_bomb_refused_before_libjpeg_runs(
    preprocess: UInt8Preprocess, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr("q16.pixels.decode_jpeg", lambda *a, **k: calls.append(1))
    data = jpeg(photo(size=(300, 300)))
    small = ImageDecoder(preprocess, max_pixels=300 * 299)
    with pytest.raises(DecodeError, match="decompression bomb"):
        small(data)
    assert calls == []


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"%!PS-Adobe-3.0 EPSF-3.0\n", id="EPS named .jpg"),
        pytest.param(JPEGS["imagenet-like 500x375 q95"]()[:20_000], id="truncated"),
        pytest.param(b"\xff\xd8\xff\xe0" + b"\x00" * 64, id="JPEG magic, no image"),
    ],
)
def test_bad_bytes_give_the_pil_verdict(preprocess: UInt8Preprocess, data: bytes) -> None:
    fast, pil = both(preprocess)
    with pytest.raises(DecodeError) as pil_error:
        pil(data)
    with pytest.raises(DecodeError) as fast_error:
        fast(data)
    assert str(fast_error.value) == str(pil_error.value)


def test_geometry_only_for_resize_and_centre_crop() -> None:
    bicubic = transforms.Resize(224, interpolation=transforms.InterpolationMode.BICUBIC)
    rgb = type("MaybeConvertMode", (), {"__call__": lambda self, x: x})()
    crop = transforms.CenterCrop(224)
    assert Geometry.of([bicubic, crop, rgb]) == Geometry(224, None, (224, 224))
    assert Geometry.of([transforms.Resize(224), crop, rgb]) is None  # bilinear
    assert Geometry.of([bicubic, transforms.RandomCrop(224), rgb]) is None
    assert Geometry.of([bicubic, rgb]) is None


def test_pil_is_the_default(preprocess: UInt8Preprocess) -> None:
    """The parity test holds the default to OpenAI's preprocessing; fast misses it."""
    assert not ImageDecoder(preprocess).takes_fast_path(open_checked(JPEGS["progressive"]()))


def test_unknown_decode_mode_is_a_user_error(preprocess: UInt8Preprocess) -> None:
    with pytest.raises(Q16Error, match=r"data\.decode must be one of pil, fast, gpu"):
        ImageDecoder(preprocess, mode="turbo")


def test_training_cache_decodes_as_inference(tiny_backbone: Backbone, tmp_path) -> None:
    """One decode rule: ImageFiles (the feature cache) gives the inference decoder's pixels."""
    from q16.data.features import ImageFiles

    path = tmp_path / "a.jpg"
    path.write_bytes(JPEGS["imagenet-like 500x375 q95"]())
    preprocess = UInt8Preprocess.from_transform(tiny_backbone.preprocess)
    for decode in ("pil", "fast"):
        decoder = ImageDecoder(preprocess, mode=decode)
        pixels, ok = ImageFiles([path], decoder, 32)[0]
        assert ok and torch.equal(pixels, decoder(path.read_bytes()))
    assert decoder.takes_fast_path(open_checked(path.read_bytes()))
