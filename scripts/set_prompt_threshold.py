"""Store the threshold a prompt was validated at in its prompts.safetensors.

    python scripts/set_prompt_threshold.py PROMPTS.safetensors --from thresholds.json \
        [--method soft] [--out PROMPTS-t.safetensors]
    python scripts/set_prompt_threshold.py PROMPTS.safetensors --threshold 0.83 \
        --note "precision 0.9 on our 2,000 labelled images"

``--from`` takes the target-precision threshold of one method from the ``thresholds.json``
that train.py (``experiment=smid_cv``) or evaluate.py wrote. infer.py scores a ``heads:``
entry without its own ``threshold`` at the stored one; ``summary.json`` says where each head's
threshold came from. The file is rewritten atomically (in place unless ``--out``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from q16.errors import Q16Error, exit_on_user_error
from q16.models.prompt_threshold import store_threshold, threshold_from_json


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("prompt", type=Path, help="a q16 prompts.safetensors")
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--threshold", type=float, help="a number in [0, 1]")
    given.add_argument("--from", dest="source", type=Path, help="a thresholds.json")
    parser.add_argument("--method", help="the method in thresholds.json (if it has several)")
    parser.add_argument("--note", default="set by hand", help="how --threshold was chosen")
    parser.add_argument("--out", type=Path, help="write here instead of in place")
    args = parser.parse_args(argv)
    with exit_on_user_error():
        if args.source is not None:
            threshold, note = threshold_from_json(args.source, args.method)
        elif args.method is not None:
            raise Q16Error("--method picks from a thresholds.json; pass --from with it")
        else:
            threshold, note = args.threshold, args.note
        path = store_threshold(args.prompt, threshold, note, args.out)
        print(f"{path}: threshold {threshold:g} ({note})")


if __name__ == "__main__":
    main()
