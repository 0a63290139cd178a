"""docs/architecture.md stays true: every module, class, function and method it names in
backticks exists, and every file it names is there."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

# Resolving the names imports every package, aiortc's too, whose interface lookup runs
# `ldconfig`: a child process, so this test is in the process tier.
pytestmark = pytest.mark.process

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
PACKAGES = ("config", "common", "sfu", "control", "recorder", "client", "bench", "tests")
DOTTED = re.compile(r"^(%s)(\.[A-Za-z_]\w*)*$" % "|".join(PACKAGES))
PATH = re.compile(r"^[\w.\-]+(/[\w.\-]+)+/?$|^\.[\w\-]+$")


def named_in(text: str) -> tuple[set[str], set[str]]:
    """(dotted names, file paths) quoted in backticks."""
    quoted = set(re.findall(r"`([^`\s]+)`", text))
    dotted = {q for q in quoted if DOTTED.match(q)}
    paths = {q for q in quoted if PATH.match(q) and not q.startswith(("../", "/"))}
    return dotted, paths


def resolve(name: str) -> object:
    """The object a dotted name means: the longest importable module, then attributes."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            found = getattr(found, attribute)  # AttributeError: the map names something gone
        return found
    raise ModuleNotFoundError(name)


def test_the_map_names_only_what_exists() -> None:
    dotted, paths = named_in(DOC.read_text(encoding="utf-8"))
    assert len(dotted) > 50, "the map should name the code it describes"
    missing = []
    for name in sorted(dotted):
        try:
            resolve(name)
        except (ImportError, AttributeError) as error:
            missing.append(f"{name}: {error}")
    missing += [f"{path}: no such file" for path in sorted(paths) if not (ROOT / path).exists()]
    assert not missing, "docs/architecture.md names what does not exist:\n" + "\n".join(missing)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("`control.app.create_app` and `sfu.worker.Worker.handle`", {"control.app.create_app", "sfu.worker.Worker.handle"}),
        ("`numpy.array` `x` `control`", {"control"}),
    ],
)
def test_dotted_names_are_found(text: str, expected: set[str]) -> None:
    assert named_in(text)[0] == expected


def test_a_name_that_is_gone_is_reported() -> None:
    with pytest.raises(AttributeError):
        resolve("control.app.no_such_function")
    with pytest.raises((ModuleNotFoundError, AttributeError)):
        resolve("sfu.no_such_module.thing")
    assert named_in("`docs/architecture.md` `.importlinter` `../shared/x.md`")[1] == {
        "docs/architecture.md",
        ".importlinter",
    }
