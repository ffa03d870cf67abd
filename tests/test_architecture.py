"""The direction of dependencies between apps (docs/architecture.md) holds.

The contracts are pyproject's ``[tool.importlinter]``; ``make lint`` runs them too.
import-linter reads every import statement, those inside functions included.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from django.conf import settings
from importlinter.cli import lint_imports

BASE_DIR = Path(settings.BASE_DIR)


def contracts() -> list[dict]:
    with open(BASE_DIR / "pyproject.toml", "rb") as file:
        return tomllib.load(file)["tool"]["importlinter"]["contracts"]


def test_the_import_contracts_are_kept(capsys, monkeypatch):
    monkeypatch.chdir(BASE_DIR)
    code = lint_imports(no_cache=True, no_logo=True)
    assert code == 0, capsys.readouterr().out


def test_every_app_has_its_place_in_the_layers():
    (layers,) = [c["layers"] for c in contracts() if c["type"] == "layers"]
    placed = {name.strip() for layer in layers for name in layer.split("|")}
    apps = {
        f"apps.{path.name}"
        for path in (BASE_DIR / "apps").iterdir()
        if (path / "__init__.py").exists()
    }
    assert placed == apps


def test_an_import_inside_a_function_against_the_direction_is_caught(
    tmp_path, monkeypatch, capsys
):
    package = tmp_path / "layered"
    for name, text in {
        "__init__.py": "",
        "high.py": "from layered import low\n",
        "low.py": "def later():\n    from layered import high\n\n    return high\n",
    }.items():
        package.mkdir(exist_ok=True)
        (package / name).write_text(text)
    config = tmp_path / "contracts.ini"
    config.write_text(
        "[importlinter]\nroot_package = layered\n\n"
        "[importlinter:contract:one-way]\nname = one way\ntype = layers\n"
        "layers =\n    layered.high\n    layered.low\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    code = lint_imports(config_filename=str(config), no_cache=True, no_logo=True)
    assert code == 1
    assert "layered.low -> layered.high" in capsys.readouterr().out
