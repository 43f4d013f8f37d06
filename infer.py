"""Flag possibly offensive images at scale: ``python infer.py data=imagenet prompt.path=...``."""

import hydra
from omegaconf import DictConfig

from q16.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="configs/infer", config_name="infer")
def main(cfg: DictConfig) -> None:
    from q16.infer import run

    with exit_on_user_error():
        run(cfg)


if __name__ == "__main__":
    main()
