"""The layer rules, checked on the source: models/ is Dagster-free, assets/ are thin, pipelines/ plumbing
imports no assets, and every third-party import is a declared dependency."""

import ast
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"models", "assets", "pipelines", "tests", "benchmarks"} | {
    p.stem for p in (ROOT / "benchmarks").glob("*.py")
}  # scripts import each other
# import name -> distribution name, where they differ
DISTRIBUTION = {"sklearn": "scikit-learn", "ppi_py": "ppi-python", "yaml": "pyyaml", "dagster_graphql": "dagster-graphql"}


def imports(path: Path) -> set[str]:
    """Every module a file imports (absolute names, top level and inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def top(name: str) -> str:
    return name.split(".")[0]


def files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).glob("*.py"))


def offending(paths: list[Path], forbidden: set[str]) -> dict[str, list[str]]:
    bad = {p.name: sorted(m for m in imports(p) if top(m) in forbidden or m in forbidden) for p in paths}
    return {k: v for k, v in bad.items() if v}


def test_models_import_no_dagster():
    assert offending(files("models"), {"dagster", "assets", "pipelines"}) == {}


def test_assets_are_thin_wrappers():
    """Asset modules call models/; they import no science library and no other asset module."""
    forbidden = {"sklearn", "scipy", "rasterio", "torch", "statsmodels", "econml"}
    assert offending(files("assets"), forbidden) == {}
    asset_modules = {
        f"assets.{p.stem}" for p in files("assets") if p.stem not in {"__init__", "metadata", "config", "retries", "partitions"}
    }
    assert offending(files("assets"), asset_modules) == {}


def test_pipelines_plumbing_imports_no_assets():
    plumbing = [ROOT / "pipelines" / "resources.py", ROOT / "pipelines" / "io_managers.py"]
    assert offending(plumbing, {"assets"}) == {}


def test_the_rules_catch_a_violation(tmp_path):
    """The checker itself: a module importing dagster or sklearn is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("import numpy\nfrom dagster import asset\n\ndef f():\n    from sklearn.linear_model import Ridge\n")
    assert offending([bad], {"dagster", "sklearn"}) == {"bad.py": ["dagster", "sklearn.linear_model"]}


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {r.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].split("!")[0].strip().lower() for r in requirements}


@pytest.mark.parametrize("folder", ["models", "assets", "pipelines", "tests", "benchmarks"])
def test_every_third_party_import_is_declared(folder):
    declared = _declared()
    used = {top(m) for p in files(folder) for m in imports(p)} - FIRST_PARTY - set(sys.stdlib_module_names)
    undeclared = sorted(m for m in used if DISTRIBUTION.get(m, m).lower().replace("_", "-") not in declared)
    assert undeclared == []
