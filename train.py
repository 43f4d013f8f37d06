"""Train prompts over a frozen CLIP: ``python train.py prompt=soft data=synthetic model=tiny``."""

import hydra
from omegaconf import DictConfig

from q16.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="configs/train", config_name="train")
def main(cfg: DictConfig) -> None:
    from q16.train import run

    with exit_on_user_error():
        run(cfg)


if __name__ == "__main__":
    main()
