"""The documentation generated from the code is up to date."""

from __future__ import annotations

from conftest import ROOT
from hwopt.passes.catalog import catalog_markdown


def test_passes_catalog_is_current() -> None:
    assert (ROOT / "docs" / "passes.md").read_text() == catalog_markdown(), (
        "docs/passes.md is stale: run `hwopt passes --markdown > docs/passes.md`"
    )
