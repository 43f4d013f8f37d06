"""The runner: reader -> scorer -> writer, one rank's shards, with timing of each stage."""

from __future__ import annotations

import time

from tqdm import tqdm

from q16.inference.read_ahead import read_ahead
from q16.inference.reader import ImageDecoder, ShardStream, make_loader, reads_blocks
from q16.inference.resume import shard_identity, shard_stamp
from q16.inference.scorer import Scorer
from q16.inference.state import LoopStats
from q16.inference.writer import ShardWriter
from q16.sources.base import InferenceSource, Shard


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
    blocks: bool = True,
) -> LoopStats:
    """The loop: wait for a batch, score it, hand it to the writer; commit finished shards.

    ``blocks``: read embedding sources a block at a time (False: the row path, for tests)."""
    stats = LoopStats()
    if not shards:
        writer.close()
        return stats
    # stamped before reading: a file that changes while it is read is scored again next time
    identities = {s.name: (shard_identity(s), shard_stamp(s)) for s in shards}
    stream = ShardStream(source, shards, decoder, batch_size, blocks=blocks)
    loader = make_loader(stream, num_workers, pin_memory=scorer.device.type == "cuda")
    keep = writer.save_embeddings
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
        if len(batch):
            tick = time.perf_counter()
            if batch.features is not None:
                scores = scorer.score_features(batch.features, keep=keep, norms=batch.norms)
            else:
                assert batch.images is not None
                scores = scorer.score_images(batch.images, keep=keep)
            stats.model_s += time.perf_counter() - tick
            writer.add(batch, scores)
            stats.images += len(batch)
            bar.update(len(batch))
        if batch.done:
            tick = time.perf_counter()
            identity, stamp = identities[batch.shard]
            writer.finish(batch.shard, batch.errors, not batch.unread, identity, stamp)
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
