"""docs/control-plane.md (the guide) stays true where it can drift: its limits table lists
every per-customer limit with the default the code has, and every REST route it names
exists in the OpenAPI document."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from config.schema import LimitsConfig
from control.http.openapi import document

pytestmark = pytest.mark.unit

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "control-plane.md"


def limits_table() -> dict[str, str]:
    """The guide's limits table: each limit name with its default, as written."""
    rows = {}
    for line in GUIDE.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            for name in re.findall(r"`([a-z_]+)`", cells[0]):
                rows[name] = cells[1]
    return rows


def test_the_limits_table_lists_every_limit_with_its_default():
    rows = limits_table()
    defaults = LimitsConfig()
    for field in dataclasses.fields(LimitsConfig):
        if field.name.startswith("_") or field.name == "SECTION":
            continue
        assert field.name in rows, f"the guide's limits table lacks {field.name}"
        value = getattr(defaults, field.name)
        written = str(value).lower() if isinstance(value, bool) else str(value)
        assert rows[field.name] == written, f"{field.name}: the guide says {rows[field.name]}, the code {written}"


def test_every_route_the_guide_names_exists():
    paths = document()["paths"]
    known = {(method.upper(), re.sub(r"\{[^}]+\}", "{}", path)) for path, ops in paths.items() for method in ops}
    named = re.findall(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`\s]+)", GUIDE.read_text())
    assert len(named) > 10
    for method, path in named:
        if path == "/api/v1/openapi.json":  # the document itself
            continue
        stem, _, last = path.removeprefix("/api/v1").rpartition("/")
        for choice in last.split("|"):  # `.../admit|deny`: both
            shape = re.sub(r"\{[^}]+\}", "{}", f"{stem}/{choice}")
            assert (method, shape) in known, f"the guide names {method} {path}: not in the OpenAPI document"
