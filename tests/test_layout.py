"""The package layout: layers import downwards only, no import circles, every package installed, one registry each."""
from __future__ import annotations

import ast
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, needs_module

PACKAGE = "keras_loss_recipes"  # the one import package pip installs (besides the hydra_plugins namespace)
# Each layer and the layers it may import (itself included). Above all: the command line, then the recipes,
# then the config's checks, which ask the layers below for what they can build.
LAYERS = {
    "api": {"api", "recipes", "lifecycle", "evaluation", "config", "training", "reporting", "data", "runtime",
            "losses"},
    "cli": {"cli", "recipes", "lifecycle", "evaluation", "config", "sweeps", "training", "reporting", "data",
            "runtime", "losses"},
    "recipes": {"recipes", "lifecycle", "evaluation", "config", "training", "reporting", "data", "runtime",
                "losses"},
    "sweeps": {"sweeps", "reporting", "runtime", "losses"},
    "findings": {"findings", "reporting", "runtime", "losses"},
    "lifecycle": {"lifecycle", "config", "training", "reporting", "data", "runtime", "losses"},
    "evaluation": {"evaluation", "training", "reporting", "data", "runtime", "losses"},
    "config": {"config", "training", "reporting", "data", "runtime", "losses"},
    "training": {"training", "runtime", "losses"},
    "reporting": {"reporting", "runtime", "losses"},
    "data": {"data", "runtime", "losses"},
    "runtime": {"runtime", "losses"},
    "losses": {"losses"},
}


def project_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the installed packages."""
    modules = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def imports_of(path: Path, modules: dict) -> set[str]:
    """The project modules a file imports anywhere (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from recipes import train` imports the module keras_loss_recipes.recipes.train.
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                     for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def layer_of(module: str) -> str:
    """keras_loss_recipes.<layer>...; the package's own __init__ counts with the recipes."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return "recipes"


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def test_layers_import_downwards_only():
    wrong = [f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})"
             for module, targets in import_graph().items() for target in sorted(targets)
             if layer_of(target) not in LAYERS[layer_of(module)]]
    assert wrong == []


def test_no_import_circles_lazy_imports_included():
    graph = import_graph()
    circles = []

    def visit(module, trail):
        for target in graph[module]:
            if target in trail:
                circles.append(trail[trail.index(target):] + [target])
            elif target not in done:
                visit(target, trail + [target])
        done.add(module)

    done: set[str] = set()
    for module in graph:
        if module not in done:
            visit(module, [module])
    assert circles == []


def test_the_layout_checks_would_see_a_wrong_import(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from keras_loss_recipes.reporting.results import write_metrics\n")
    modules = project_modules()
    assert imports_of(source, modules) == {"keras_loss_recipes.reporting.results"}
    assert "reporting" not in LAYERS[layer_of("keras_loss_recipes.training.network")]


def test_every_folder_of_code_is_a_package_that_pip_installs():
    from setuptools import find_packages

    folders = {p.parent for p in (ROOT / PACKAGE).rglob("*.py")}
    missing_init = sorted(str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").is_file())
    assert missing_init == []
    # The same discovery as pyproject.toml's [tool.setuptools.packages.find].
    found = set(find_packages(str(ROOT), include=[PACKAGE, f"{PACKAGE}.*"]))
    assert found == {".".join(f.relative_to(ROOT).parts) for f in folders}


@pytest.mark.slow
def test_the_built_wheel_holds_every_module(tmp_path):
    """`pip install .` installs what this wheel holds: every module, keras_loss_recipes.training.steps included."""
    import subprocess
    import sys

    import shutil

    needs_module("setuptools", "pip install setuptools")
    # A copy of what the build reads: setuptools writes build/ and *.egg-info next to pyproject.toml.
    source = tmp_path / "source"
    for name in ("pyproject.toml", "requirements.txt", "README.md"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, source / name)
    for folder in (PACKAGE, "hydra_plugins"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                             "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    [wheel] = (tmp_path / "dist").glob("keras_loss_recipes-*.whl")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    expected = {str(p.relative_to(ROOT)) for p in project_modules().values()}
    assert expected - in_wheel == set()
    assert "keras_loss_recipes/training/steps/jax_step.py" in in_wheel
    # One top-level import package and Hydra's plugin namespace: nothing that shadows a user's losses.py.
    tops = {name.split("/")[0] for name in in_wheel if not name.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {PACKAGE, "hydra_plugins"}


def test_the_recipe_registry_matches_the_recipe_configs():
    import yaml

    from keras_loss_recipes.recipes.registry import RECIPES

    configs = {p.stem: yaml.safe_load(p.read_text())["name"] for p in (ROOT / "configs" / "recipe").glob("*.yaml")}
    assert configs == {name: name for name in RECIPES}


def test_the_group_configs_offer_what_the_code_builds():
    import yaml

    from keras_loss_recipes.runtime.targets import resolve_target
    from keras_loss_recipes.training.optimizers import BUILDERS as OPTIMIZERS

    names = {yaml.safe_load(p.read_text())["name"] for p in (ROOT / "configs" / "optimizer").glob("*.yaml")}
    assert names == set(OPTIMIZERS)
    # Every model config names a callable that exists (resolved without building anything).
    for path in (ROOT / "configs" / "model").glob("*.yaml"):
        assert callable(resolve_target(yaml.safe_load(path.read_text())["_target_"], "model._target_")), path.name


def test_readme_formulation_tables_are_the_registry_rendering():
    """README.md shows the tables `python -m keras_loss_recipes.losses` prints, verbatim."""
    from keras_loss_recipes.losses.table import formulation_table, path_table

    readme = (ROOT / "README.md").read_text()
    assert formulation_table() in readme
    assert path_table() in readme


def test_the_readme_layout_is_the_rendering_of_the_tree():
    """README.md's layout block and docs/layout.md list every package, module and script in its own words."""
    from scripts import readme_layout

    stale = f"a package, module or docstring changed since the layout was written: run {readme_layout.COMMAND}"
    assert readme_layout.readme_block() in (ROOT / "README.md").read_text(), stale
    assert (ROOT / readme_layout.PAGE).read_text() == readme_layout.page(), stale


def test_the_layout_lists_a_new_module_and_stops_at_one_without_a_docstring(tmp_path):
    from scripts.readme_layout import page, readme_block

    package = tmp_path / PACKAGE / "fresh"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text('"""The package."""\n')
    (package / "__init__.py").write_text('"""A subpackage, e.g. for one job. More on it."""\n')
    (package / "new_module.py").write_text('"""Does `one.thing` ... for now. The rest."""\n')
    lines = readme_block(tmp_path).splitlines()
    assert lines[lines.index("  fresh/                   A subpackage, e.g. for one job.") + 1].strip() == "new_module.py"
    assert "| `new_module.py` | Does `one.thing` ... for now. |" in page(tmp_path)
    (package / "silent.py").write_text("x = 1\n")
    with pytest.raises(SystemExit, match=f"{PACKAGE}/fresh/silent.py has no docstring"):
        readme_block(tmp_path)


def test_the_command_line_is_the_top_layer_nothing_imports():
    importers = sorted(module for module, targets in import_graph().items()
                       if layer_of(module) != "cli" and any(layer_of(t) == "cli" for t in targets))
    assert importers == []
