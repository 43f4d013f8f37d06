"""What every entry point's ``run(cfg)`` shares: its ``task`` runner, its command line, and
Hydra's ``???`` values reported as one line. The only other code that reads a DictConfig is
each task's runner (``q16.train``, ``q16.evaluate``, ``q16.infer``).

A task is one ``configs/<entry>/task/<name>.yaml`` whose ``_target_`` (with ``_partial_: true``)
names a runner, a function ``cfg -> typed result``: adding one (``python evaluate.py task=i2p``)
is that YAML and the module holding its runner; no entry point switches on a task's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from q16.errors import Q16Error


class TaskRunner(Protocol):
    """A task's ``run``: reads its config, returns its own typed result."""

    def __call__(self, cfg: DictConfig) -> Any: ...


def run_task(cfg: DictConfig, script: str) -> Any:
    """Build ``cfg.task``'s runner and hand it the config."""
    task = cfg.get("task")
    if not isinstance(task, DictConfig) or "_target_" not in task:
        raise Q16Error(f"task={task!r} names no runner; choose a task=<name> of {script}")
    try:
        runner: TaskRunner = instantiate(task)
    except InstantiationException as err:
        raise Q16Error(f"task: {task._target_} cannot be built ({err.__cause__ or err})") from None
    if not callable(runner):
        raise Q16Error(f"task: {task._target_} is not a runner (a function of the config)")
    return runner(cfg)


def command(script: str) -> str:
    """The command line of this run (``python <script> <overrides>``), for run records."""
    if not HydraConfig.initialized():
        return f"python {script}"
    return " ".join([f"python {script}", *HydraConfig.get().overrides.task])


def require_values(cfg: DictConfig, script: str, examples: Mapping[str, str] | None = None) -> None:
    """Hydra's ``???`` values as one line (``examples``: a value to show per key)."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        hint = " ".join(f"{key}={(examples or {}).get(key, '...')}" for key in missing)
        raise Q16Error(f"{', '.join(missing)} must be set, e.g. python {script} {choices()}{hint}")


def choices() -> str:
    """``data=<option> `` as chosen on this run's command line or defaults, else nothing."""
    if HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get("data")
        if choice:
            return f"data={choice} "
    return ""
