"""``python evaluate.py task=i2p data.path=generated/ data.prompts=i2p.csv``: the I2P
benchmark's metric over a folder of generated images; the only code that reads that task's
config (``configs/evaluate/task/i2p.yaml``, ``nudity:`` in ``configs/evaluate/evaluate.yaml``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from q16 import train_config
from q16.data.i2p import I2PImages
from q16.detectors.nudenet import check_labels
from q16.entry import command, require_values
from q16.experiments.i2p import I2PProtocol
from q16.experiments.i2p_task import I2PRun, run_i2p_folder
from q16.experiments.prompt_sources import load_sources, parse_sources
from q16.runinfo import write_run_info

log = logging.getLogger(__name__)

EXAMPLES = {"data.path": "generated/", "data.prompts": "i2p.csv"}


def run_i2p(cfg: DictConfig) -> dict[str, Any]:
    """Cheap checks first (protocol, inputs, prompts CSV), then the model, the Q16 head and
    NudeNet, then one pass over the images."""
    started = time.perf_counter()
    require_values(cfg, "evaluate.py", EXAMPLES)
    integer = train_config.integer
    node = cfg.i2p
    protocol = I2PProtocol(
        q16_rule=str(node.q16_rule),
        q16_threshold=node.q16_threshold,
        nudity_labels=check_labels([str(x) for x in cfg.nudity.labels]),
        nudity_threshold=train_config.real(cfg, "nudity.threshold", 0, 1),
        n_prompts=integer(cfg, "i2p.n_prompts", 1),
        n_draws=integer(cfg, "i2p.n_draws", 1),
        seed=integer(cfg, "i2p.seed"),
    )
    run = I2PRun(
        out_dir=Path(str(node.out_dir)).expanduser(),
        batch_size=integer(cfg, "i2p.batch_size", 1),
        note=str(node.note or ""),
    )
    integer(cfg, "seed")
    configs = dict(cfg.get("prompts") or {})
    specs = parse_sources([str(node.q16)], configs)
    source: I2PImages = instantiate(cfg.data)
    images = source.load()
    train_config.seed_everything(cfg)  # the same random model as train.py for pretrained=null
    backbone = train_config.build_backbone(cfg)
    heads = train_config.zero_shot_heads(cfg, {specs[0].target} & set(configs))
    (q16,) = load_sources(specs, backbone, heads)
    detector = train_config.nudity_detector(cfg, str(backbone.device))
    protocol = replace(protocol, detector=detector.settings())
    if backbone.spec.random_weights:
        run = replace(run, note=train_config.with_random_note(run.note))
    metrics = run_i2p_folder(
        images,
        Path(source.path).expanduser(),
        backbone,
        q16.head,
        {**q16.describe(), "model": backbone.spec.name, "weights": backbone.spec.weights_id},
        detector,
        protocol,
        run,
    )
    write_run_info(
        run.out_dir,
        cfg,
        command=command("evaluate.py"),
        total_seconds=round(time.perf_counter() - started, 2),
    )
    return metrics
