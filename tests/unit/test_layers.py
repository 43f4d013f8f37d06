"""The package's layers (docs/architecture.md): no import points up a layer, no cycle between
layers. The contract lives in pyproject.toml; import-linter checks it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def lint_imports(config: Path) -> subprocess.CompletedProcess[str]:
    """In a child process: import-linter reconfigures logging, which must not leak into tests."""
    code = (
        "import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(config)], capture_output=True, text=True, timeout=120
    )


def test_no_import_points_up_a_layer() -> None:
    result = lint_imports(PYPROJECT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "KEPT" in result.stdout


def test_the_check_fails_when_layers_are_inverted(tmp_path) -> None:
    """Negative control: models above training is false (training imports models)."""
    config = tmp_path / "inverted.toml"
    config.write_text(
        '[tool.importlinter]\nroot_package = "q16"\n\n'
        '[[tool.importlinter.contracts]]\nname = "inverted"\ntype = "layers"\n'
        'layers = ["q16.models", "q16.training"]\n'
    )
    result = lint_imports(config)
    assert result.returncode != 0 and "BROKEN" in result.stdout


def test_every_package_and_module_is_in_a_layer() -> None:
    """A module the contract does not name is checked by nothing: a new package (as
    ``q16.review`` was) must be given its layer."""
    text = PYPROJECT.read_text()
    contract = text.split('name = "q16 layers"', 1)[1].split("]\n", 1)[0]
    named = set(re.findall(r"q16\.[a-z_0-9]+", contract))
    package = PYPROJECT.parent / "src" / "q16"
    modules = {
        f"q16.{path.stem}"
        for path in package.iterdir()
        if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").is_file()
    }
    assert "q16.review" in modules and modules <= named, sorted(modules - named)
