"""docs/api.md is what scripts/make_api_docs.py makes of the OpenAPI document the server
serves: a route added without regenerating the guide fails here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.unit
def test_the_api_guide_is_current():
    spec = importlib.util.spec_from_file_location("make_api_docs", ROOT / "scripts" / "make_api_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    made = module.render()
    assert (ROOT / "docs" / "api.md").read_text() == made, "run: python scripts/make_api_docs.py"
    # Every operation of the document is in it, with an example.
    operations = [(m, p) for p, item in module.document()["paths"].items() for m in module.METHODS if m in item]
    for method, path in operations:
        assert f"### `{method.upper()} {path}`" in made
    assert made.count("```sh") == len(operations) + 1  # and the first session at the top
