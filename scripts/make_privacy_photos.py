"""Real photographs for the offline privacy demo (``make privacy-demo``).

    python scripts/make_privacy_photos.py DATASET REQUEST

DATASET gets scikit-image's and scikit-learn's sample photographs and composites with known
faces (``q16.privacy.photos``: 10 JPEGs, 5 of them with faces); REQUEST gets one removal
request: the astronaut photo as a person might send it (resized, re-encoded at quality 60).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from PIL import Image

from q16.privacy import photos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("request", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    photos.write_folder(args.dataset)
    args.request.mkdir(parents=True, exist_ok=True)
    astronaut = Image.fromarray(photos.shipped()[0].pixels).resize((384, 384))
    astronaut.save(args.request / "my_photo.jpg", quality=60)


if __name__ == "__main__":
    main()
