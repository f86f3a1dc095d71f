"""The documented settings are real settings: the example file and every adapter's doc table
load and validate, so the docs cannot drift from the models."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from bridge.registry import configured
from bridge.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
ADAPTER_DOCS = sorted((ROOT / "docs" / "adapters").glob("*.md"))


def test_settings_example_loads_and_validates():
    settings = load_settings(ROOT / "settings.toml.example")
    assert [a.name for a in configured(settings.adapters)] == ["local"]


@pytest.mark.parametrize("doc", ADAPTER_DOCS, ids=lambda p: p.stem)
def test_adapter_doc_example_is_a_valid_table(doc):
    block = re.search(r"```toml\n(.*?)```", doc.read_text(), re.S)
    assert block, f"{doc.name} has no TOML example"
    tables = tomllib.loads(block.group(1))["adapters"]
    [adapter] = configured(tables)
    assert adapter.name in tables


def test_every_builtin_crm_adapter_is_documented():
    from bridge.registry import manifests

    for name, manifest in manifests().items():
        assert manifest.docs, f"{name}: its manifest names no docs page"
        assert (ROOT / manifest.docs).is_file(), f"{name}: {manifest.docs} is missing"
