"""The documentation generated from the code is up to date, and the README documents the
options the CLI has (and no others)."""

from __future__ import annotations

import re

import typer
from conftest import ROOT

from hwopt.cli import app
from hwopt.report.passes import catalog_markdown


def test_passes_catalog_is_current() -> None:
    assert (ROOT / "docs" / "passes.md").read_text() == catalog_markdown(), (
        "docs/passes.md is stale: run `hwopt passes --markdown > docs/passes.md`"
    )


def _cli_options() -> dict[str, set[str]]:
    group = typer.main.get_command(app)
    options: dict[str, set[str]] = {}
    for name, command in group.commands.items():
        options[name] = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)
                         if opt.startswith("--")}
    return options


def test_readme_documents_every_optimize_and_tune_option() -> None:
    readme = (ROOT / "README.md").read_text()
    for command in ("optimize", "tune"):
        missing = sorted(opt for opt in _cli_options()[command] - {"--help"} if f"`{opt}" not in readme
                         and f"{opt}`" not in readme and f"`{opt.replace('--no-', '--')}" not in readme)
        assert not missing, f"README.md does not document these {command} options: {', '.join(missing)}"


def test_readme_mentions_no_option_the_cli_lacks() -> None:
    known = set().union(*_cli_options().values()) | {"--help"}
    readme = (ROOT / "README.md").read_text()
    # Options in code spans and command lines: `--name` or `hwopt ... --name`.
    mentioned = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]+)", readme))
    assert not sorted(mentioned - known), f"README.md mentions unknown options: {sorted(mentioned - known)}"
