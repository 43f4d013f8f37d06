"""The package's layers (docs/architecture.md): no import points up a layer, no cycle between
layers. The contract lives in pyproject.toml; import-linter checks it."""

from __future__ import annotations

from pathlib import Path

from importlinter.cli import lint_imports

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_no_import_points_up_a_layer() -> None:
    assert lint_imports(config_filename=str(PYPROJECT), no_cache=True, no_logo=True) == 0


def test_the_check_fails_when_layers_are_inverted(tmp_path) -> None:
    """Negative control: models above training is false (training imports models)."""
    config = tmp_path / "inverted.toml"
    config.write_text(
        '[tool.importlinter]\nroot_package = "q16"\n\n'
        '[[tool.importlinter.contracts]]\nname = "inverted"\ntype = "layers"\n'
        'layers = ["q16.models", "q16.training"]\n'
    )
    assert lint_imports(config_filename=str(config), no_cache=True, no_logo=True) != 0
