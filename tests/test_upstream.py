"""The private upstream names hwopt relies on (hwopt/passes/upstream.py) are there and do what
hwopt needs: the installed versions lie within pyproject.toml's bounds, and no other module
reaches into a library's private names.

Run this file first on a new onnxscript version before widening its bound (the upstream
module's docstring lists the rest)."""

from __future__ import annotations

import ast
import sys
from importlib import metadata
from pathlib import Path

import pytest
from conftest import ROOT
from packaging.requirements import Requirement
from packaging.version import Version

from hwopt.passes import upstream

if sys.version_info >= (3, 11):
    import tomllib
else:  # hwopt depends on tomli below 3.11
    import tomli as tomllib

# The libraries whose private names only hwopt/passes/upstream.py may use.
UPSTREAM_PACKAGES = ("onnx", "onnx_ir", "onnxruntime", "onnxscript", "onnxsim")
# Private names used elsewhere, each with the reason it is not in the upstream module yet.
KNOWN_ELSEWHERE = {
    # onnxruntime-openvino lists OpenVINO's devices only there; the function returns [] when
    # the import fails. hwopt/targets/ was out of scope of the change that made the module.
    ("hwopt/targets/providers.py", "onnxruntime.capi._pybind_state"),
}


def _requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {(r := Requirement(line)).name.lower(): r for line in project["dependencies"]}


@pytest.mark.parametrize("package", sorted(upstream.CHECKED_AGAINST))
def test_installed_version_is_within_pyproject_bounds(package: str) -> None:
    requirement = _requirements()[package]
    bounds = requirement.specifier
    assert any(spec.operator in ("<", "<=", "==", "~=") for spec in bounds), (
        f"pyproject.toml gives {package} no upper bound, but hwopt uses its private names"
    )
    checked = upstream.CHECKED_AGAINST[package]
    assert bounds.contains(checked, prereleases=True), (
        f"pyproject.toml allows {package}{bounds}, which leaves out {checked}, the version "
        "hwopt/passes/upstream.py says it was checked against"
    )
    installed = metadata.version(package)
    assert bounds.contains(installed, prereleases=True), (
        f"{package} {installed} is installed, but pyproject.toml allows {package}{bounds} only: "
        "hwopt uses private names of it that other versions may not have. To widen the bound, "
        "follow hwopt/passes/upstream.py's docstring on this version."
    )


def test_a_zero_major_package_is_bounded_below_its_next_minor() -> None:
    """0.x packages may break anything in a minor release: bound them below the next one."""
    for package, checked in upstream.CHECKED_AGAINST.items():
        version = Version(checked)
        if version.major == 0:
            assert not _requirements()[package].specifier.contains(f"0.{version.minor + 1}.0"), (
                f"{package} is 0.x: its bound must stop before 0.{version.minor + 1}"
            )


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _hwopt_sources() -> list[Path]:
    return sorted((ROOT / "hwopt").rglob("*.py"))


def _private_upstream_imports(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
            names = [alias.name for alias in node.names]
            found += [f"{node.module}.{name}" for name in names if _private(name)
                      and node.module.split(".")[0] in UPSTREAM_PACKAGES]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        found += [m for m in modules if m.split(".")[0] in UPSTREAM_PACKAGES
                  and any(_private(part) for part in m.split("."))]
    return found


def _defined_private_names() -> set[str]:
    """Private names hwopt defines itself (functions, classes, attributes, module globals), not
    counting what the upstream module writes into upstream objects."""
    names: set[str] = set()
    for path in _hwopt_sources():
        if path.name == "upstream.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
    return {name for name in names if _private(name)}


def test_only_the_upstream_module_uses_private_upstream_names() -> None:
    """A private import of an upstream library, or a private attribute read off an object that
    is not hwopt's (``rule._target_pattern``), belongs in hwopt/passes/upstream.py."""
    own = _defined_private_names()
    allowed_attributes = {"_exit"}  # os._exit: documented, for a forked child
    found = []
    for path in _hwopt_sources():
        where = path.relative_to(ROOT).as_posix()
        if where == "hwopt/passes/upstream.py":
            continue
        tree = ast.parse(path.read_text())
        found += [(where, name) for name in _private_upstream_imports(tree)]
        found += [
            (where, f".{node.attr}")
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and _private(node.attr)
            and node.attr not in own and node.attr not in allowed_attributes
        ]
    unexpected = sorted(set(found) - KNOWN_ELSEWHERE)
    assert not unexpected, f"private upstream names outside hwopt/passes/upstream.py: {unexpected}"
    stale = sorted(KNOWN_ELSEWHERE - set(found))
    assert not stale, f"KNOWN_ELSEWHERE lists uses that are gone: {stale}"
