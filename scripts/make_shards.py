"""Pack a folder of images into WebDataset shards, keeping class and original file name.

    python scripts/make_shards.py /data/imagenet/train '/data/imagenet-wds/train-%06d.tar' \
        --maxcount 1000 [--class-names imagenet_class_index.json]

In the ImageNet layout (``<synset>/<file>.JPEG``) each sample gets ``.cls`` (the class index:
position in the sorted folder list, or the mapping file's index for that synset) and ``.json``
(``file_name``, ``path``, ``synset``, ``class_name``). Image bytes are copied, not re-encoded.
Score the result with ``python infer.py data=imagenet data.shards=/data/imagenet-wds``.
``--synthetic N`` writes N generated images instead (an offline demo: ``make infer-demo``).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from q16.imageload import read_file
from q16.sources.folder import ImageFolder, list_images
from q16.sources.wds import synthetic_images, write_shards

log = logging.getLogger("make_shards")


def samples(src: Path, class_names: str | None) -> Iterator[dict[str, Any]]:
    folder = ImageFolder(str(src), class_names=class_names)
    table = folder.class_table()
    used: set[str] = set()
    for rel in list_images(src):
        path = src / rel
        try:
            data = read_file(path)  # regular files only: a FIFO never hangs the packing
        except (OSError, ValueError) as err:
            log.warning("skipped %s: %s", rel, err)
            continue
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", path.stem)  # webdataset keys end at the first dot
        key = stem if stem not in used else f"{stem}_{len(used)}"
        used.add(key)
        top = rel.split("/", 1)[0] if "/" in rel else None
        meta: dict[str, Any] = {"file_name": path.name, "path": rel}
        sample: dict[str, Any] = {
            "__key__": key,
            path.suffix.lstrip(".") or "jpg": data,
        }
        if top in table:
            class_id, synset, name = table[top]
            meta.update(class_id=class_id, synset=synset, class_name=name)
            sample["cls"] = str(class_id).encode()
        sample["json"] = json.dumps(meta).encode()
        yield sample


class Parser(argparse.ArgumentParser):
    """Usage mistakes as one ``q16: error:`` line, like infer.py and train.py."""

    def error(self, message: str) -> NoReturn:
        print(f"q16: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def count(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, not {text!r}")
        return value

    return parse


def main() -> None:
    parser = Parser(description=__doc__.split("\n")[0])
    parser.add_argument("src", type=Path, nargs="?", help="folder of images (class sub-folders)")
    parser.add_argument("dest", help="printf shard pattern, e.g. out/train-%%06d.tar")
    parser.add_argument(
        "--synthetic",
        type=count(0),
        default=0,
        help="instead of SRC: N generated JPEGs (offline demo)",
    )
    parser.add_argument("--maxcount", type=count(1), default=1000, help="images per shard")
    parser.add_argument("--class-names", default=None, help="JSON/TXT class list (optional)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if "%" not in args.dest:
        parser.error("dest must contain a printf field such as %06d")
    if args.synthetic:
        source = synthetic_images(args.synthetic, size=(160, 120))
    elif args.src is not None and args.src.is_dir():
        source = samples(args.src, args.class_names)
    else:
        parser.error("SRC must be a folder of images (or pass --synthetic N)")
    written = write_shards(source, args.dest, args.maxcount)
    if not written:
        parser.error("no image could be read: no shard written")
    log.info("wrote %d shards: %s ... %s", len(written), written[0], written[-1])


if __name__ == "__main__":
    main()
