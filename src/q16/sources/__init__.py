"""Inference inputs: what ``infer.py`` scores (``data=imagenet|folder|embeddings``).

``base`` says what every source owes (:class:`InferenceSource`, and :class:`EmbeddingSource`
for precomputed embeddings); ``wds`` (tar shards), ``folder`` (a tree of image files) and
``embeddings`` (a ``save_embeddings`` run) are the sources; ``classnames`` reads ImageNet class
lists; ``hostile`` makes inputs that break naive readers, for tests. Labelled training sets
live in ``q16.data``.
"""

from q16.sources.base import (
    EmbeddingSource,
    EmbeddingSpace,
    ErrorLog,
    InferenceSource,
    RawSample,
    Shard,
)

__all__ = ["EmbeddingSource", "EmbeddingSpace", "ErrorLog", "InferenceSource", "RawSample", "Shard"]
