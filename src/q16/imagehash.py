"""Fingerprints of an image, for finding its copies: sha256 of the bytes, PDQ of the pixels.

sha256 finds byte-identical copies only. PDQ (Meta's perceptual hash, 256 bits, the format
hash-sharing programmes exchange) survives re-encoding, resizing and mild edits; it is computed
on the image shrunk to at most ``PDQ_SIDE`` pixels (the hash itself works on 64 x 64, and a
2048-pixel photo costs 40 times as much at full size). Flips and quarter turns are found by
hashing the request's eight dihedral variants. Quality (0-100) below ``PDQ_MIN_QUALITY`` marks
a flat image whose hash says little (Meta's advice); such hashes never match.
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from q16.errors import require_package

PDQ_SIDE = 512
PDQ_MIN_QUALITY = 50
PDQ_BITS = 256


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _shrunk(pixels: np.ndarray) -> np.ndarray:
    height, width = pixels.shape[:2]
    if max(height, width) <= PDQ_SIDE:
        return np.ascontiguousarray(pixels)
    factor = PDQ_SIDE / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))


def pdq(pixels: np.ndarray) -> tuple[str, int]:
    """(64 hex digits, quality) of a uint8 (H, W, 3) RGB image."""
    bits, quality = require_package("pdqhash", "PDQ hashing", "privacy").compute(_shrunk(pixels))
    return _hex(bits), int(quality)


def pdq_dihedral(pixels: np.ndarray) -> tuple[list[str], int]:
    """The eight hashes of the image's flips and quarter turns, and the quality."""
    module = require_package("pdqhash", "PDQ hashing", "privacy")
    hashes, quality = module.compute_dihedral(_shrunk(pixels))
    return [_hex(bits) for bits in hashes], int(quality)


def _hex(bits: np.ndarray) -> str:
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()


def pdq_matrix(hashes: list[str] | tuple[str, ...]) -> np.ndarray:
    """(N, 32) uint8 of hex hashes; a malformed one becomes all ones and is caught by
    ``valid_pdq``."""
    out = np.zeros((len(hashes), PDQ_BITS // 8), np.uint8)
    for row, text in enumerate(hashes):
        try:
            raw = bytes.fromhex(text) if isinstance(text, str) else b""
        except ValueError:
            raw = b""
        if len(raw) == PDQ_BITS // 8:
            out[row] = np.frombuffer(raw, np.uint8)
    return out


def valid_pdq(text: object) -> bool:
    if not isinstance(text, str) or len(text) != PDQ_BITS // 4:
        return False
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


def hamming(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """(Q, N) bit distances between rows of two ``pdq_matrix`` results, in blocks so that a
    million candidates take 32 MB per query row, not 8 GB."""
    out = np.empty((len(queries), len(candidates)), np.int16)
    for start in range(0, len(candidates), 65536):
        block = candidates[start : start + 65536]
        xor = np.bitwise_xor(queries[:, None, :], block[None, :, :])
        out[:, start : start + len(block)] = np.bitwise_count(xor).sum(axis=2)
    return out
