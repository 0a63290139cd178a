"""control.meeting.numbers: one grammar for meeting numbers, also the OpenAPI pattern."""

from __future__ import annotations

import re

import pytest

from control.http.openapi import document
from control.meeting import numbers

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text", ["123-4567-8901", "12345678901", "123-45678901", "1234567-8901"])
def test_accepted_forms(text: str) -> None:
    assert numbers.parse(text) == "12345678901"


@pytest.mark.parametrize(
    "text",
    ["12-3456-78901", "1234-567-8901", "023-4567-8901", "123 4567 8901", "123-4567-890", "123-4567-89012",
     "１２３-4567-8901", "1２3-4567-8901", "", None, 12345678901, "123--4567-8901", "-123-4567-8901"],
)  # fmt: skip
def test_refused_forms(text: object) -> None:
    assert numbers.parse(text) is None


def test_new_numbers_display_and_parse_back() -> None:
    for _ in range(200):
        digits = numbers.new_number()
        assert len(digits) == 11 and digits[0] != "0"
        assert numbers.parse(numbers.display(digits)) == digits
        assert re.match(numbers.DISPLAY_PATTERN, numbers.display(digits))


def test_the_openapi_document_uses_the_same_grammar() -> None:
    paths = document()["paths"]
    patterns = {
        p["schema"].get("pattern")
        for item in paths.values()
        for p in item.get("parameters", [])
        if p["name"] == "number"
    }
    assert patterns == {numbers.PATTERN}
