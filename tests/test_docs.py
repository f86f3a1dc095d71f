"""The documented settings are real settings: the example file and every adapter's doc table
load and validate, so the docs cannot drift from the models."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from bridge import manifest_docs
from bridge.registry import configured
from bridge.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
# Every adapter's page (its manifest's ``docs``), and any page under docs/adapters/.
ADAPTER_DOCS = sorted(
    {ROOT / m.docs for m in manifest_docs.ordered()}
    | set((ROOT / "docs" / "adapters").glob("*.md"))
)


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


def test_deploy_guide_matches_the_code(tmp_path):
    """docs/DEPLOY.md: its settings load, its uid is the image's, its proxies hide /metrics."""
    deploy = (ROOT / "docs" / "DEPLOY.md").read_text()
    [toml_block] = re.findall(r"```toml\n(.*?)```", deploy, re.S)
    path = tmp_path / "settings.toml"
    path.write_text(toml_block)
    settings = load_settings(path)
    assert str(settings.server.metrics_listen) == "127.0.0.1:9101"
    uid = re.search(r"--uid (\d+)", (ROOT / "Dockerfile").read_text()).group(1)
    assert f"uid {uid}" in deploy and f"-o {uid}" in deploy
    unit = re.search(r"```ini\n(.*?)```", deploy, re.S).group(1)
    assert "LimitNOFILE=" in unit and "ExecStart=" in unit
    caddy = re.search(r"```\n(\{.*?)```", deploy, re.S).group(1)
    nginx = re.search(r"```nginx\n(.*?)```", deploy, re.S).group(1)
    assert "read_header" in caddy and "@operator path /metrics /readyz" in caddy
    assert "client_header_timeout" in nginx
    assert "location = /metrics { return 404; }" in nginx and "location = /readyz" in nginx
    assert "metrics_token" in deploy


def test_readme_adapter_table_is_the_manifests():
    current = (ROOT / "README.md").read_text()
    assert manifest_docs.readme(current) == current, (
        "README.md's adapter table differs from the manifests: run python -m bridge.manifest_docs"
    )


def test_settings_example_adapter_sections_are_the_manifests_and_docs_examples():
    current = (ROOT / "settings.toml.example").read_text()
    assert manifest_docs.settings_example(current) == current, (
        "settings.toml.example's adapter sections differ from the manifests and docs pages:"
        " run python -m bridge.manifest_docs"
    )


def test_manifest_docs_check_finds_a_stale_file(tmp_path, capsys):
    for name in ("README.md", "settings.toml.example"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    for m in manifest_docs.ordered():
        page = tmp_path / m.docs
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text((ROOT / m.docs).read_text())
    assert manifest_docs.main(["--check", "--root", str(tmp_path)]) == 0
    page = tmp_path / "docs" / "adapters" / "hubspot.md"
    page.write_text(page.read_text().replace("task_due_minutes = 15", "task_due_minutes = 20"))
    assert manifest_docs.main(["--check", "--root", str(tmp_path)]) == 1
    assert "stale: settings.toml.example" in capsys.readouterr().err
    assert manifest_docs.main(["--root", str(tmp_path)]) == 0  # rewrites it
    assert "task_due_minutes = 20" in (tmp_path / "settings.toml.example").read_text()
    assert manifest_docs.main(["--check", "--root", str(tmp_path)]) == 0


def test_settings_example_has_a_section_per_adapter():
    from bridge.registry import manifests

    text = (ROOT / "settings.toml.example").read_text()
    for name in manifests():
        assert re.search(rf"^#? ?\[adapters\.{name}\]", text, re.M) or re.search(
            rf"\[adapters\.{name}\]", text
        ), f"settings.toml.example has no [adapters.{name}] section"


def test_manifest_aliases_are_registered():
    from bridge.registry import available, manifests

    for m in manifests().values():
        for alias in m.aliases:
            assert alias in available(), f"{m.name}: alias {alias} has no entry point"
