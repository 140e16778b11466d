"""The reference pages stay true to the package: the API page has every module, and the architecture page states the
layer order that tests/test_architecture.py enforces and names every module."""

from __future__ import annotations

import importlib
import re

from test_architecture import LEVELS, PACKAGE, _module_name

DOCS = PACKAGE.parent / "docs"
MODULES = sorted(_module_name(p) for p in PACKAGE.rglob("*.py") if p.name != "__main__.py")


def test_the_api_page_documents_every_module():
    entries = re.findall(r"^::: (\S+)$", (DOCS / "api.md").read_text(), flags=re.M)
    missing = sorted(set(MODULES) - set(entries))
    assert not missing, "add to docs/api.md: " + ", ".join(missing)
    assert len(entries) == len(set(entries)), "a module is documented twice in docs/api.md"
    for entry in entries:  # an entry that names nothing would make mkdocstrings fail the strict build
        importlib.import_module(entry)


def test_the_architecture_page_states_the_layer_order():
    text = (DOCS / "architecture.md").read_text()
    rows = re.findall(r"^\| (\d+) \| (.+?) \|", text, flags=re.M)
    stated = {room.strip("`/"): int(level) for level, rooms in rows for room in re.findall(r"`[a-z_]+/`", rooms)}
    assert stated == LEVELS
    assert "tests/test_architecture.py" in text


def test_the_architecture_page_names_every_module():
    text = (DOCS / "architecture.md").read_text()
    unnamed = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py" and f"`{p.name}`" not in text and f"`{p.stem}`" not in text
    ]
    assert not unnamed, "describe in docs/architecture.md: " + ", ".join(sorted(unnamed))
