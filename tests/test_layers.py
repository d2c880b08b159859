"""The layer rules, checked on the source: models/ is Dagster-free and its packages depend only
downward, no leading-underscore name crosses a package, assets/ are thin, pipelines/ plumbing
imports no assets, every third-party import is a declared dependency, and the README's layout
lists the tree as it is."""

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


# models/ packages by rank: a package imports only packages of lower rank (simulation may use any)
RANK = {"io": 0, "ingest": 1, "representation": 2, "causal": 3, "interpretation": 4, "debiasing": 4, "generalization": 4, "analyst": 5}
PACKAGES = sorted(p.name for p in (ROOT / "models").iterdir() if (p / "__init__.py").exists())


def imports(path: Path) -> set[str]:
    """Every module a file imports (absolute names, top level and inside functions)."""
    return {module for module, _ in imported_names(path)}


def imported_names(path: Path) -> set[tuple[str, str | None]]:
    """(module, name) for every import of a file; name is None for ``import module``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {(alias.name, None) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {(node.module, alias.name) for alias in node.names}
            found.add((node.module, None))
    return found


def top(name: str) -> str:
    return name.split(".")[0]


def files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def package_of(module: str) -> str | None:
    """``models.causal.cate`` -> ``causal``; None outside models/."""
    parts = module.split(".")
    return parts[1] if parts[0] == "models" and len(parts) > 1 else None


def offending(paths: list[Path], forbidden: set[str]) -> dict[str, list[str]]:
    bad = {p.name: sorted(m for m in imports(p) if top(m) in forbidden or m in forbidden) for p in paths}
    return {k: v for k, v in bad.items() if v}


def test_models_import_no_dagster():
    assert offending(files("models"), {"dagster", "assets", "pipelines"}) == {}


def test_every_package_says_what_it_is_for_and_lists_its_api():
    """One opening line in each ``__init__``, and an ``__all__`` that names only what it imports."""
    for name in PACKAGES:
        init = ROOT / "models" / name / "__init__.py"
        tree = ast.parse(init.read_text())
        doc = ast.get_docstring(tree)
        assert doc and len(doc.splitlines()) == 1, f"models/{name}/__init__.py: one opening line"
        exported = next(n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "__all__")
        listed = {e.value for e in exported.elts}
        imported = {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
        assert listed == imported, f"models/{name}: __all__ and the imports differ by {listed ^ imported}"


def layer_violations(paths: list[Path], root: Path = ROOT) -> dict[str, list[str]]:
    """Imports from a models/ package of equal or higher rank (a sibling package included)."""
    bad = {}
    for path in paths:
        here = path.relative_to(root / "models").parts[0]
        if here not in RANK:
            continue
        up = sorted(m for m in imports(path) if (p := package_of(m)) and p != here and (p not in RANK or RANK[p] >= RANK[here]))
        if up:
            bad[path.name] = up
    return bad


def test_models_packages_depend_only_downward():
    assert set(PACKAGES) == set(RANK) | {"simulation"}
    assert layer_violations(files("models")) == {}


def private_imports(paths: list[Path], root: Path = ROOT) -> dict[str, list[str]]:
    """Leading-underscore names imported from another package (or from outside models/)."""
    bad = {}
    for path in paths:
        here = ".".join(path.relative_to(root).parts[:2])
        crossing = sorted(
            f"{m}.{n}"
            for m, n in imported_names(path)
            if n and n.startswith("_") and m.split(".")[0] in FIRST_PARTY and not m.startswith(here)
        )
        if crossing:
            bad[str(path.relative_to(root))] = crossing
    return bad


def test_no_private_name_crosses_a_package():
    assert private_imports([p for folder in ("models", "assets", "pipelines", "tests", "benchmarks") for p in files(folder)]) == {}


def test_the_layer_rules_catch_a_violation(tmp_path):
    """An ingest module importing from causal, and a private name of another package, are both reported."""
    bad = tmp_path / "models" / "ingest" / "probe.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("from models.causal.cate import fit_choice\nfrom models.io.storage import _private\n")
    assert layer_violations([bad], tmp_path) == {"probe.py": ["models.causal.cate"]}
    assert private_imports([bad], tmp_path) == {"models/ingest/probe.py": ["models.io.storage._private"]}


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


def readme_layout() -> dict[str, set[str]]:
    """The README's layout block as {top folder: entries}: ``models`` lists ``package/`` and
    ``package/module.py``, the other folders the ``.py`` files and sub-folders they name."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Layout\n\n```\n", 1)[1].split("```", 1)[0]
    listed: dict[str, set[str]] = {}
    top_folder = package = None
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip())
        words = line.split()
        if not words:
            continue
        if indent == 0:
            top_folder, package = words[0].rstrip("/"), None
            listed[top_folder] = set()
        elif top_folder == "models" and indent == 2:
            package = words[0]
            listed["models"].add(package)
        elif top_folder == "models" and indent == 4 and words[0].endswith(".py"):
            listed["models"].add(package + words[0])
        elif top_folder != "models":
            names = line.strip().split("  ")[0] if indent == 2 else ""
            listed[top_folder] |= {w.strip(",") for w in names.split() if w.strip(",").endswith((".py", "/"))}
    return listed


def test_readme_layout_matches_the_tree():
    listed = readme_layout()
    models = {f"{p.name}/" for p in (ROOT / "models").iterdir() if (p / "__init__.py").exists()}
    models |= {f"{p.parent.name}/{p.name}" for p in (ROOT / "models").glob("*/*.py") if p.name != "__init__.py"}
    assert listed["models"] == models
    for folder in ("assets", "pipelines"):
        assert listed[folder] == {p.name for p in (ROOT / folder).glob("*.py") if p.name != "__init__.py"}, folder
    assert listed["tests"] == {f"{p.name}/" for p in (ROOT / "tests").iterdir() if p.is_dir() and not p.name.startswith("__")}
