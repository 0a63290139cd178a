"""The one build step pyproject.toml cannot declare: the native forwarding module.

`sfu.transport.native._forward` (sfu/transport/native/forward.c through cffi's API mode,
sfu/transport/native/build.py) is an optional extension: with gcc and the Python headers
(scripts/_venv.sh installs gcc and python3-dev) `pip install -e .` builds it; without a
compiler the install still succeeds and the workers forward in Python (each logs which
path it uses: sfu.transport.native.load).
"""

import os
import runpy

from setuptools import setup


def native_extensions() -> list:
    try:
        build = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "sfu", "transport", "native",
                                            "build.py"))
    except Exception as exc:  # noqa: BLE001 (cffi absent, or anything else: the Python path, never a failed install)
        print(f"conclave: the native forwarding module is not built ({exc}); the workers forward in Python")
        return []
    extension = build["ffibuilder"].distutils_extension(tmpdir=os.path.join("build", "cffi"))
    extension.optional = True  # a failed compile is a warning, not a failed install
    return [extension]


setup(ext_modules=native_extensions())
