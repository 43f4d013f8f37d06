"""Record what produced a run: resolved config, git commit, machine, date."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from q16.fileio import atomic_write_text


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The q16 checkout's commit (not the caller's working directory's)."""
    cwd = cwd if cwd is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def machine_description() -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": __import__("os").cpu_count(),
        "torch": torch.__version__,
        "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
    }


EXPERIMENT_KEYS = (
    "seed",
    "task",
    "model",
    "prompt",
    "data",
    "split",
    "trainer",
    "cv",
    "eval",
)
# where things live, not what the experiment is
LOCATION_KEYS = {
    "trainer": ("default_root_dir",),
    "data": ("root", "path", "image_root"),
    "model": ("cache_dir",),
    "cv": ("out_dir", "reference_csv"),
}


def config_hash(cfg: DictConfig, keys: tuple[str, ...] = EXPERIMENT_KEYS) -> str:
    """Hash of what defines the experiment; paths, output dirs and loggers are left out."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    node = {key: resolved[key] for key in keys if key in resolved}
    for group, location_keys in LOCATION_KEYS.items():
        if isinstance(node.get(group), dict):
            for key in location_keys:
                node[group].pop(key, None)
    text = json.dumps(node, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ConfigRecord:
    """A run's resolved config (``config.yaml``) and its hash, taken in ``run(cfg)`` so that
    code below it can write the run's record without the config tree."""

    yaml: str
    hash: str

    @classmethod
    def of(cls, cfg: DictConfig) -> ConfigRecord:
        return cls(OmegaConf.to_yaml(cfg, resolve=True), config_hash(cfg))


def write_run_info(out_dir: Path, cfg: DictConfig | ConfigRecord, **extra: Any) -> Path:
    """``config.yaml`` (resolved) and ``run_info.json`` beside the run's outputs."""
    record = cfg if isinstance(cfg, ConfigRecord) else ConfigRecord.of(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "config.yaml", record.yaml)
    info = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "config_hash": record.hash,
        "machine": machine_description(),
        **extra,
    }
    path = out_dir / "run_info.json"
    atomic_write_text(path, json.dumps(info, indent=2, default=str))
    return path
