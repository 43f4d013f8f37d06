"""The runner: reader -> scorer -> writer, one rank's shards, with timing of each stage."""

from __future__ import annotations

import time

import torch
from tqdm import tqdm

from q16.inference.gpu_decode import BatchDecoder
from q16.inference.pixel_heads import PixelHeads
from q16.inference.read_ahead import read_ahead
from q16.inference.reader import Batch, ImageDecoder, ShardStream, make_loader, reads_blocks
from q16.inference.resume import shard_identity, shard_stamp
from q16.inference.scorer import Scorer
from q16.inference.state import LoopStats
from q16.inference.writer import ShardWriter
from q16.sources.base import ErrorLog, InferenceSource, Shard


def score_shards(
    source: InferenceSource,
    shards: list[Shard],
    scorer: Scorer,
    writer: ShardWriter,
    *,
    decoder: ImageDecoder,
    batch_size: int,
    num_workers: int,
    show_progress: bool = False,
    pixel: PixelHeads | None = None,
) -> LoopStats:
    """The loop: wait for a batch, score it, hand it to the writer; commit finished shards.

    ``pixel``: detector heads and hashes, from the views the reader workers made."""
    stats = LoopStats()
    if not shards:
        writer.close()
        return stats
    # stamped before reading: a file that changes while it is read is scored again next time
    identities = {s.name: (shard_identity(s), shard_stamp(s)) for s in shards}
    extractors = pixel.extractors() if pixel else ()
    stream = ShardStream(source, shards, decoder, batch_size, extractors=extractors)
    loader = make_loader(stream, num_workers, pin_memory=scorer.device.type == "cuda")
    keep = writer.save_embeddings
    device_decoder = _device_decoder(decoder, scorer)
    late: dict[str, ErrorLog] = {}
    """Per shard: rows the device decoder dropped (recorded when the shard is committed)."""
    bar = tqdm(unit="img", disable=not show_progress, dynamic_ncols=True, smoothing=0.1)
    begin = time.perf_counter()
    # blocks of saved embeddings are read in this process: on a thread, ahead of scoring
    batches = read_ahead(loader) if num_workers == 0 and reads_blocks(source) else iter(loader)
    while True:
        tick = time.perf_counter()
        batch = next(batches, None)
        stats.data_wait_s += time.perf_counter() - tick
        if batch is None:
            break
        if batch.encoded is not None:
            tick = time.perf_counter()
            batch.images = _decode_batch(device_decoder, batch, late, stats)
            stats.model_s += time.perf_counter() - tick
        if len(batch):
            tick = time.perf_counter()
            if batch.features is not None:
                scores = scorer.score_features(batch.features, keep=keep, norms=batch.norms)
            else:
                assert batch.images is not None
                scores = scorer.score_images(batch.images, keep=keep)
            stats.model_s += time.perf_counter() - tick
            columns = None
            if pixel and batch.extracted is not None:
                tick = time.perf_counter()
                probs, columns = pixel.run(batch.extracted)
                scores.heads.update(probs)
                stats.pixel_s += time.perf_counter() - tick
            writer.add(batch, scores, columns)
            stats.images += len(batch)
            bar.update(len(batch))
        if batch.done:
            tick = time.perf_counter()
            identity, stamp = identities[batch.shard]
            errors = batch.errors + (late.pop(batch.shard).records if batch.shard in late else [])
            writer.finish(batch.shard, errors, not batch.unread, identity, stamp)
            stats.write_s += time.perf_counter() - tick
            if batch.unread:
                stats.unread.append(batch.shard)
            else:
                stats.shards += 1
            bar.set_postfix(shards=f"{stats.shards}/{len(shards)}")
    tick = time.perf_counter()
    writer.close()
    stats.write_s += time.perf_counter() - tick
    bar.close()
    stats.loop_s = time.perf_counter() - begin
    return stats


def _device_decoder(decoder: ImageDecoder, scorer: Scorer) -> BatchDecoder | None:
    """``infer.decode=gpu``: the batch decoder on the scorer's device, falling back per image
    to the PIL decoder with the run's limits."""
    if decoder.mode != "gpu" or decoder.preprocess.geometry is None:
        return None
    fallback = ImageDecoder(decoder.preprocess, decoder.max_pixels, decoder.exif_transpose, "pil")
    return BatchDecoder(decoder.preprocess, scorer.device, cpu=fallback)


def _decode_batch(
    device_decoder: BatchDecoder | None, batch: Batch, late: dict[str, ErrorLog], stats: LoopStats
) -> torch.Tensor:
    """The batch's images decoded on the device; rows nothing could decode are dropped from the
    batch and recorded against its shard, as a worker would have recorded them."""
    assert device_decoder is not None and batch.encoded is not None
    decoded = device_decoder.decode(batch.encoded)
    batch.encoded = None
    stats.decoded_on_cpu += len(decoded.fallbacks)
    if decoded.errors:
        errors = late.setdefault(batch.shard, ErrorLog(batch.shard))
        for row, reason in decoded.errors:
            errors.add(batch.keys[row], reason)
        batch.keep_rows(decoded.kept)
    return decoded.images
