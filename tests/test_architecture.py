"""The architecture holds: every module imports on its own, and imports follow the table of
docs/architecture.md ("Packages and who may import whom", "Inside control").

The table is checked twice, independently: by import-linter with the contracts in
/.importlinter, and by the AST walk below (which also covers what import-linter cannot say
simply, such as "stdlib only"). Modules are discovered by walking the tree, so the tests
hold whatever exists today.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "config", "sfu", "control", "recorder", "client", "bench")
IMPORT_CONCURRENCY = 2  # the machine is shared: two interpreters at a time
IMPORT_TIMEOUT_S = 120


# --- discovering modules ----------------------------------------------------------------


@dataclass(frozen=True)
class SourceModule:
    name: str  # dotted: "sfu.wire.rtp"; a package is named by its __init__.py
    path: Path
    is_package: bool


def discover_modules(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, SourceModule]:
    """Every importable .py file under the given top-level packages of root."""
    modules: dict[str, SourceModule] = {}
    for package in packages:
        if not (root / package / "__init__.py").is_file():
            continue
        for directory, subdirectories, files in os.walk(root / package):
            subdirectories[:] = sorted(d for d in subdirectories if d.isidentifier())
            parts = Path(directory).relative_to(root).parts
            for file in sorted(files):
                stem = file[:-3]
                if not file.endswith(".py") or not stem.isidentifier():
                    continue
                is_package = stem == "__init__"
                name = ".".join(parts if is_package else (*parts, stem))
                modules[name] = SourceModule(name, Path(directory) / file, is_package)
    return modules


# --- every module imports on its own ----------------------------------------------------


def import_alone(root: Path, module: str) -> str | None:
    """Import module in a fresh interpreter; return why it failed, or None."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    try:
        result = subprocess.run(
            [sys.executable, "-c", f"import {module}"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=IMPORT_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return f"import took longer than {IMPORT_TIMEOUT_S} s"
    if result.returncode == 0:
        return None
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit status {result.returncode}"


@pytest.mark.process
@pytest.mark.timeout(900)
def test_every_module_imports_on_its_own():
    # __main__ modules are skipped: importing one runs the program.
    names = sorted(name for name in discover_modules(ROOT) if not name.endswith("__main__"))
    assert "config" in names
    with ThreadPoolExecutor(max_workers=IMPORT_CONCURRENCY) as pool:
        outcomes = dict(zip(names, pool.map(lambda name: import_alone(ROOT, name), names)))
    failures = [f"{name}: {why}" for name, why in outcomes.items() if why is not None]
    assert not failures, "modules that do not import on their own:\n" + "\n".join(failures)


@pytest.mark.process
def test_import_alone_reports_why_a_module_does_not_import(tmp_path):
    build_tree(
        tmp_path,
        {
            "config/__init__.py": "",
            "config/good.py": "import os\n",
            "config/cycle_a.py": "from config.cycle_b import B\nA = 1\n",
            "config/cycle_b.py": "from config.cycle_a import A\nB = 1\n",
            "config/missing.py": "import not_installed_anywhere\n",
        },
    )
    assert import_alone(tmp_path, "config.good") is None
    assert "ImportError" in import_alone(tmp_path, "config.cycle_a")
    assert import_alone(tmp_path, "config.missing") == (
        "ModuleNotFoundError: No module named 'not_installed_anywhere'"
    )


# --- the import table, checked on the AST -----------------------------------------------


@dataclass(frozen=True)
class Zone:
    """A part of the tree and what it may import."""

    name: str
    internal: tuple[str, ...]  # project modules allowed, each with everything under it
    third_party: bool | frozenset[str]  # True: any; otherwise only these top-level names
    summary: str

    def allows(self, target: str) -> bool:
        top = target.partition(".")[0]
        if top in PACKAGES:
            # Importing a package that contains an allowed module is needed to reach it.
            return any(
                target == allowed
                or target.startswith(allowed + ".")
                or allowed.startswith(target + ".")
                for allowed in self.internal
            )
        if top in sys.stdlib_module_names:
            return True
        return self.third_party is True or top in self.third_party


# Inside control, the wings import downward only (docs/architecture.md, "Inside control"):
# each line may import the lines below it, never those above; names on one line are
# independent of each other. The old circle (accounts -> live -> recording -> accounts)
# cannot come back: accounts sits below meeting, meeting below recording.
CONTROL_LAYERS = (
    ("control.cli",),
    ("control.app",),
    ("control.http",),
    ("control.recording", "control.metrics"),
    ("control.meeting",),
    ("control.accounts", "control.processes", "control.webhooks", "control.cluster"),
    ("control.store",),
    ("control.errors", "control.clock", "control.tasks"),
)
CONTROL_OUTSIDE = ("config", "common", "sfu.api", "recorder.api")


def control_zones() -> list[Zone]:
    zones = [Zone("control", ("control", *CONTROL_OUTSIDE), True, ", ".join(CONTROL_OUTSIDE))]
    for depth, layer in enumerate(CONTROL_LAYERS):
        below = tuple(name for lower in CONTROL_LAYERS[depth + 1 :] for name in lower)
        for name in layer:
            summary = ", ".join(below) if below else "nothing else of control"
            zones.append(Zone(name, (name, *below, *CONTROL_OUTSIDE), True, summary + ", " +
                              ", ".join(CONTROL_OUTSIDE)))  # fmt: skip
    return zones


ZONES = {
    zone.name: zone
    for zone in (
        Zone("config", ("config",), frozenset({"yaml"}), "the standard library and yaml"),
        # Shared by the processes: below all of them, and beside config (it needs none).
        Zone("common", ("common",), frozenset(), "the standard library and common"),
        # Only the S3 backend brings in its client, and only once an S3 storage is opened.
        Zone(
            "common.storage.s3",
            ("common.storage", "common.netguard"),
            frozenset({"aiobotocore", "botocore"}),
            "the standard library, common.storage, common.netguard, aiobotocore and botocore",
        ),
        # Where customers' URLs may lead: the checks, and the resolver the HTTP clients use.
        Zone("common.netguard", ("common.netguard",), frozenset({"aiohttp"}), "the standard library and aiohttp"),
        Zone("sfu.wire", ("sfu.wire",), frozenset(), "the standard library only"),
        Zone("sfu.engine", ("sfu.engine", "sfu.wire", "config"), True, "sfu.wire, config"),
        Zone(
            "sfu.transport",
            ("sfu.transport", "sfu.wire", "sfu.engine"),
            True,
            "sfu.wire, sfu.engine",
        ),
        # sfu.worker, sfu.api and anything else in sfu.
        Zone("sfu", ("sfu", "config", "common"), True, "anything in sfu, config, common"),
        *control_zones(),
        # The recorder process talks to control over the same channel as the workers
        # (common.channel); of the SFU it only shares the RTP/RTCP parsers.
        Zone(
            "recorder",
            ("recorder", "config", "common", "sfu.wire"),
            True,
            "config, common, sfu.wire",
        ),
        # The Python client SDK (bots, tests, bench) speaks the public protocol only.
        Zone("client", ("client",), True, "nothing of the server"),
    )
}
CHECKED_PACKAGES = ("common", "config", "sfu", "control", "recorder", "client")  # bench may import anything


def zone_of(module: str) -> Zone:
    """The most specific zone containing module."""
    parts = module.split(".")
    for length in range(len(parts), 0, -1):
        zone = ZONES.get(".".join(parts[:length]))
        if zone is not None:
            return zone
    raise LookupError(f"{module} is in no zone")


@dataclass(frozen=True)
class Import:
    importer: str
    path: Path
    line: int
    target: str  # absolute dotted name; "" when a relative import climbs out of the tree


def imports_of(module: SourceModule, known: set[str]) -> Iterator[Import]:
    """Every import statement of module, anywhere in it (functions, TYPE_CHECKING blocks).

    `from package import name` counts as importing package.name when that is a module of
    the tree, and as importing package otherwise (name is then an attribute).
    """
    tree = ast.parse(module.path.read_text(encoding="utf-8"), filename=str(module.path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module.name, module.path, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = absolute_base(module, node.level, node.module)
            for alias in node.names:
                submodule = f"{base}.{alias.name}" if base else alias.name
                target = submodule if submodule in known else base
                yield Import(module.name, module.path, node.lineno, target)


def absolute_base(module: SourceModule, level: int, name: str | None) -> str:
    """The absolute module a `from ... import` statement reads from ("" if out of the tree)."""
    if level == 0:
        return name or ""
    package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    if level - 1 >= len(package):
        return ""
    parts = package[: len(package) - (level - 1)]
    return ".".join([*parts, name] if name else parts)


def import_violations(root: Path) -> list[str]:
    """One line per import in config/ sfu/ control/ recorder/ that the table forbids."""
    modules = discover_modules(root, CHECKED_PACKAGES)
    known = set(discover_modules(root))
    violations = []
    for module in modules.values():
        zone = zone_of(module.name)
        try:
            found_imports = list(imports_of(module, known))
        except SyntaxError as error:
            where = f"{module.path.relative_to(root)}:{error.lineno}"
            violations.append(f"{where}: cannot parse: {error.msg}")
            continue
        for found in found_imports:
            if found.target and zone.allows(found.target):
                continue
            where = f"{found.path.relative_to(root)}:{found.line}"
            what = found.target or "a module above the top-level package"
            rule = f"{zone.name} may import {zone.summary}"
            violations.append(f"{where}: {found.importer} imports {what} ({rule})")
    return violations


def test_imports_follow_the_table():
    violations = import_violations(ROOT)
    assert not violations, "imports that ARCHITECTURE.md forbids:\n" + "\n".join(violations)


def lines(*statements: str) -> str:
    return "".join(statement + "\n" for statement in statements)


SYNTHETIC_TREE = {
    "common/__init__.py": "",
    "common/messages.py": lines("import dataclasses", "import config"),
    "common/channel.py": lines("from common.messages import Message", "from sfu import api"),
    "common/storage/__init__.py": lines("import aiobotocore"),
    "common/storage/s3.py": lines("import aiobotocore", "from botocore.config import Config", "import numpy"),
    "config/__init__.py": lines("from config.schema import Config"),
    "config/schema.py": lines("import os, dataclasses", "import yaml", "from . import loader"),
    "config/loader.py": lines("from __future__ import annotations", "import numpy"),
    "sfu/__init__.py": "",
    "sfu/wire/__init__.py": "",
    "sfu/wire/rtp.py": lines("import struct", "from .stun import parse"),
    "sfu/wire/stun.py": lines("import yaml", "from ..engine import router", "from config import Config"),
    "sfu/engine/__init__.py": "",
    "sfu/engine/router.py": lines(
        "from typing import TYPE_CHECKING",
        "from sfu.wire import rtp",
        "from config import Config",
        "import numpy",
        "if TYPE_CHECKING:",
        "    from sfu.transport.udp import Udp",
        "import asyncio",  # the table allows the standard library; sans-I/O does not
    ),
    "sfu/transport/__init__.py": "",
    "sfu/transport/udp.py": lines(
        "import aiortc, pylibsrtp", "from ..engine import router", "from ..wire import rtp", "import config"
    ),
    "sfu/api.py": lines("from sfu.wire import rtp", "from . import worker", "from common.messages import Message"),
    "sfu/worker.py": lines(
        "import sfu.transport.udp", "from config import Config", "def later():", "    import control.app"
    ),
    "control/__init__.py": "",
    "control/app.py": lines(
        "import aiohttp",
        "from sfu.api import Hello",
        "from sfu import api",
        "import sfu",
        "from sfu import wire",
        "from sfu.engine.router import Router",
        "import bench",
        "from common.channel import ChannelClient",
        "from sfu.channel import ChannelClient",
    ),
    "client/__init__.py": lines("from control.app import x", "from ..config import y"),
    # Control's wings: every layer exists (import-linter needs them); two upward imports.
    **{f"control/{name}/__init__.py": "" for name in ("cli", "http", "recording", "metrics", "processes", "store",
                                                       "cluster")},
    **{f"control/{name}.py": "" for name in ("webhooks", "errors", "clock", "tasks")},
    "control/accounts/__init__.py": "",
    "control/accounts/service.py": lines("from control.meeting import lifecycle"),
    "control/meeting/__init__.py": "",
    "control/meeting/lifecycle.py": lines("from control.recording import service", "from control.accounts import service"),
    "control/recording/service.py": lines("from control.meeting import lifecycle", "from control.accounts import service"),
    "recorder/__init__.py": lines(
        "from sfu.wire.rtp import parse",
        "from sfu.api import Hello",
        "from sfu.worker import W",
        "from sfu.channel import ChannelServer",
        "from sfu.engine.router import Router",
        "from common.channel import ChannelServer",
    ),
    "bench/__init__.py": lines("import control.app", "import sfu.engine.router"),
    "control/static/app.js": "import x from 'y';\n",
    "control/static/not-a-module.py": lines("import sfu.engine"),
}


def build_tree(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def test_checker_finds_each_forbidden_import_in_a_synthetic_tree(tmp_path):
    build_tree(tmp_path, SYNTHETIC_TREE)
    found = {line.split(" (")[0] for line in import_violations(tmp_path)}
    assert found == {
        "common/messages.py:2: common.messages imports config",
        "common/channel.py:2: common.channel imports sfu.api",
        "common/storage/__init__.py:1: common.storage imports aiobotocore",
        "common/storage/s3.py:3: common.storage.s3 imports numpy",
        "config/loader.py:2: config.loader imports numpy",
        "sfu/wire/stun.py:1: sfu.wire.stun imports yaml",
        "sfu/wire/stun.py:2: sfu.wire.stun imports sfu.engine.router",
        "sfu/wire/stun.py:3: sfu.wire.stun imports config",
        "sfu/engine/router.py:6: sfu.engine.router imports sfu.transport.udp",
        "sfu/transport/udp.py:4: sfu.transport.udp imports config",
        "sfu/worker.py:4: sfu.worker imports control.app",
        "control/app.py:5: control.app imports sfu.wire",
        "control/app.py:6: control.app imports sfu.engine.router",
        "control/app.py:7: control.app imports bench",
        "control/app.py:9: control.app imports sfu.channel",
        "recorder/__init__.py:2: recorder imports sfu.api",
        "client/__init__.py:1: client imports control.app",
        "client/__init__.py:2: client imports a module above the top-level package",
        "control/accounts/service.py:1: control.accounts.service imports control.meeting.lifecycle",
        "control/meeting/lifecycle.py:1: control.meeting.lifecycle imports control.recording.service",
        "recorder/__init__.py:3: recorder imports sfu.worker",
        "recorder/__init__.py:4: recorder imports sfu.channel",
        "recorder/__init__.py:5: recorder imports sfu.engine.router",
    }


def test_checker_accepts_a_clean_tree(tmp_path):
    build_tree(
        tmp_path,
        {
            "config/__init__.py": lines("import yaml", "from .schema import Config"),
            "config/schema.py": lines("import dataclasses"),
            "sfu/__init__.py": "",
            "sfu/wire/__init__.py": lines("from . import rtp"),
            "sfu/wire/rtp.py": lines("import struct"),
            "sfu/engine/__init__.py": lines(
                "import numpy", "from ..wire import rtp", "from config.schema import Config"
            ),
            "sfu/transport/__init__.py": lines(
                "import aiortc", "from sfu.engine import x", "from sfu.wire.rtp import y"
            ),
            "sfu/worker.py": lines(
                "import sfu.transport, sfu.engine", "from config import Config", "from common.channel import open_server"
            ),
            "common/__init__.py": "",
            "common/messages.py": lines("import dataclasses", "from common import channel"),
            "common/storage/__init__.py": lines("from common.storage import local"),
            "common/storage/s3.py": lines("import aiobotocore", "from botocore.config import Config", "from common import storage"),
            "control/__init__.py": lines(
                "import aiohttp",
                "from sfu import api",
                "from common import channel, messages",
                "from common.storage import local",
                "from recorder.api import Job",
                "import config",
            ),
            "recorder/__init__.py": lines(
                "import av",
                "from sfu.wire import rtp",
                "from common.channel import ChannelServer",
                "from common.messages import X",
                "from config import Config",
            ),
        },
    )
    assert import_violations(tmp_path) == []


# --- the engine decides, the transports and the worker act ----------------------------

# What sans-I/O excludes (STYLE.md: decisions apart from effects): the router's tree, the
# announcer and its notice clock, the producer and consumer are fed events and a clock.
SANS_IO_PACKAGE = "sfu.engine"
IO_MODULES = frozenset(
    {"asyncio", "socket", "selectors", "logging", "uvloop", "aiortc", "aioice", "aiohttp", "pylibsrtp"}
)


def sans_io_violations(root: Path) -> list[str]:
    """One line per import of an event loop, socket or logger in sfu/engine/."""
    modules = discover_modules(root, ("sfu",))
    known = set(modules)
    violations = []
    for module in modules.values():
        if module.name != SANS_IO_PACKAGE and not module.name.startswith(SANS_IO_PACKAGE + "."):
            continue
        for found in imports_of(module, known):
            if found.target.partition(".")[0] in IO_MODULES:
                where = f"{found.path.relative_to(root)}:{found.line}"
                violations.append(f"{where}: {found.importer} imports {found.target} ({SANS_IO_PACKAGE} is sans-I/O)")
    return violations


def test_the_engine_is_sans_io():
    violations = sans_io_violations(ROOT)
    assert not violations, "I/O in the engine:\n" + "\n".join(violations)


def test_sans_io_checker_finds_an_event_loop_in_the_engine(tmp_path):
    build_tree(
        tmp_path,
        {
            "sfu/__init__.py": "",
            "sfu/engine/__init__.py": "",
            "sfu/engine/clock.py": lines("import asyncio", "from logging import getLogger", "import struct"),
            "sfu/transport/__init__.py": "",
            "sfu/transport/udp.py": lines("import asyncio, socket"),
        },
    )
    assert [line.split(" (")[0] for line in sans_io_violations(tmp_path)] == [
        "sfu/engine/clock.py:1: sfu.engine.clock imports asyncio",
        "sfu/engine/clock.py:2: sfu.engine.clock imports logging",
    ]


# --- the same table, checked by import-linter -------------------------------------------


def run_lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("importlinter", reason="import-linter is in the [test] extra")
    # The console script beside this interpreter; else the same entry point through it.
    script = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    entry_point = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"
    command = [script] if script else [sys.executable, "-c", entry_point]
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run(
        [*command, str(cwd / ".importlinter"), "--no-cache", "--no-logo"],
        cwd=cwd,  # lint-imports puts its working directory first on sys.path
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.process
@pytest.mark.timeout(300)
def test_import_linter_contracts_are_kept():
    result = run_lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.process
@pytest.mark.timeout(300)
def test_import_linter_contracts_catch_forbidden_imports(tmp_path):
    build_tree(tmp_path, SYNTHETIC_TREE)
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    result = run_lint_imports(tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    for broken in (
        "config.loader -> numpy",
        "sfu.wire.stun -> yaml",
        "sfu.wire.stun -> sfu.engine.router",
        "sfu.wire.stun -> config",
        "sfu.transport.udp -> config",
        "sfu.worker -> control.app",
        "control.app -> sfu.wire",
        "control.app -> sfu.engine.router",
        "control.app -> bench",
        "recorder -> sfu.worker",
        "recorder -> sfu.engine.router",
        "client -> control.app",
        "control.accounts.service -> control.meeting.lifecycle",
        "control.meeting.lifecycle -> control.recording.service",
        "recorder -> sfu.api",
        "common.messages -> config",
        "common.channel -> sfu.api",
        "common.storage -> aiobotocore",
        "common.storage.s3 -> numpy",
        "sfu.engine.router -> asyncio",
    ):
        assert broken in output, f"{broken!r} not reported:\n{output}"
    for allowed in (
        "control.app -> sfu.api",
        "control.app -> common.channel",
        "recorder -> sfu.wire.rtp",
        "control.recording.service -> control.meeting.lifecycle",
        "control.meeting.lifecycle -> control.accounts.service",
        "recorder -> common.channel",
        "common.storage.s3 -> aiobotocore",
        "common.storage.s3 -> botocore",
    ):
        assert allowed not in output, output


# --- no imports hidden inside functions in control ---------------------------------------


def function_level_imports(root: Path, package: str = "control") -> list[str]:
    """Every import statement inside a function or method of `package`: each one hides an
    edge of the import graph (usually a cycle held apart) from both checks above."""
    found = []
    for module in discover_modules(root, (package,)).values():
        tree = ast.parse(module.path.read_text(encoding="utf-8"), filename=str(module.path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        found.append(f"{module.path.relative_to(root)}:{inner.lineno}: {ast.unparse(inner)}")
    return sorted(set(found))


def test_control_imports_nothing_inside_functions():
    hidden = function_level_imports(ROOT)
    assert not hidden, "imports inside functions of control:\n" + "\n".join(hidden)


def test_function_level_imports_are_found(tmp_path):
    build_tree(tmp_path, {
        "control/__init__.py": "import os\n",
        "control/a.py": lines("import json", "def f():", "    from control import b", "class C:",
                              "    async def g(self):", "        import re"),
        "control/b.py": "",
    })  # fmt: skip
    assert function_level_imports(tmp_path) == [
        "control/a.py:3: from control import b",
        "control/a.py:6: import re",
    ]
