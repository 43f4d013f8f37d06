"""Prompt sets head to head: ``python evaluate.py model=ViT-B-32 'sources=[paper,zeroshot]'``."""

import hydra
from omegaconf import DictConfig

from q16.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="configs/evaluate", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from q16.evaluate import run

    with exit_on_user_error():
        run(cfg)


if __name__ == "__main__":
    main()
