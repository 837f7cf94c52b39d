"""hanoi 0.0.4's own test files, fetched at test time and run against ``flagstaff.compat.hanoi``.

hanoi declares no licence (``License: UNKNOWN``, no licence file), so its tests
cannot be copied into this repository. Instead the test session downloads the
sdist with pip (``pip download hanoi==0.0.4 --no-deps --no-binary :all:``),
checks its SHA-256, caches it in the temp dir (content-addressed, so concurrent
sessions share it safely), and loads ``tests/api.py`` and ``tests/backend.py``
from the archive unchanged, with an import shim that makes ``hanoi.api`` and
``hanoi.backend`` the compatibility layer.

The shim changes one thing besides the import: hanoi's Redis backends default
to ``localhost:6379`` and its tests FLUSHDB there. Here the default is the
throwaway ``redis-server`` the test module starts (:data:`DEFAULT_REDIS`), and
with none set, constructing a Redis backend without arguments is refused.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path
from typing import Any

from flagstaff.compat import hanoi as layer

VERSION = "0.0.4"
SDIST = f"hanoi-{VERSION}.tar.gz"
SHA256 = "f12f1f8c37b5edcdf9a037900b50d56c12ad48091459af25a06e8163de366959"
TEST_FILES = ("api", "backend")

DEFAULT_REDIS: list[str] = []
"""The URL hanoi's ``RedisBackEnd()`` connects to (set by the test module's fixture)."""

OPENED: list[layer.RedisBackEnd] = []
"""Redis backends made by hanoi's tests, which never close them (see :func:`close_opened`)."""


class FetchError(RuntimeError):
    """The sdist could not be downloaded or is not the one pinned."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(cache: Path | None = None) -> Path:
    """The unpacked sdist (``hanoi/`` and ``tests/``), downloading it if needed."""
    cache = cache or Path(tempfile.gettempdir()) / f"flagstaff-hanoi-{SHA256[:16]}"
    root = cache / f"hanoi-{VERSION}"
    if _complete(root):
        return root
    cache.mkdir(parents=True, exist_ok=True)
    download = Path(tempfile.mkdtemp(prefix="download-", dir=cache))
    command = [sys.executable, "-m", "pip", "download", f"hanoi=={VERSION}"]
    command += ["--no-deps", "--no-binary", ":all:", "--disable-pip-version-check", "-d", str(download)]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        raise FetchError("pip download hanoi timed out after 300 s") from None
    archive = download / SDIST
    if proc.returncode != 0 or not archive.is_file():
        raise FetchError(f"pip download hanoi=={VERSION} failed:\n{proc.stdout}\n{proc.stderr}")
    digest = _sha256(archive)
    if digest != SHA256:
        raise FetchError(f"{SDIST} has SHA-256 {digest}, expected {SHA256}")
    with tarfile.open(archive) as tar:
        tar.extractall(download, filter="data")
    if root.exists() and not _complete(root):
        shutil.rmtree(root, ignore_errors=True)  # a partial copy from an older layout
    try:
        os.rename(download / f"hanoi-{VERSION}", root)  # atomic; another session may have won
    except OSError:
        if not _complete(root):
            raise
    shutil.rmtree(download, ignore_errors=True)
    return root


def _complete(root: Path) -> bool:
    wanted = [root / "tests" / f"{name}.py" for name in TEST_FILES]
    wanted += [root / "hanoi" / f"{name}.py" for name in ("__init__", "api", "backend")]
    return all(path.is_file() for path in wanted)


def load_original(root: Path) -> types.ModuleType:
    """hanoi 0.0.4's own code, imported as ``hanoi_0_0_4`` (never as ``hanoi``): the
    migration tests write data and take the "before" decisions with it."""
    name = "hanoi_0_0_4"
    if name in sys.modules:
        return sys.modules[name]
    package = root / "hanoi"
    spec = importlib.util.spec_from_file_location(
        name, package / "__init__.py", submodule_search_locations=[str(package)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


class RedisBackEnd(layer.RedisBackEnd):
    """hanoi's ``RedisBackEnd``, whose default is the test's own server, never 6379."""

    def __init__(self, obj: Any = None, **kwargs: Any) -> None:
        super().__init__(obj if obj is not None else _default_redis(), **kwargs)
        OPENED.append(self)


class RedisHighPerfBackEnd(layer.RedisHighPerfBackEnd):
    """hanoi's ``RedisHighPerfBackEnd``, whose default is the test's own server."""

    def __init__(self, obj: Any = None, **kwargs: Any) -> None:
        super().__init__(obj if obj is not None else _default_redis(), **kwargs)
        OPENED.append(self)


def close_opened() -> None:
    """Close the backends hanoi's tests left open (each holds a store watch)."""
    while OPENED:
        OPENED.pop().close()


def _default_redis() -> str:
    if not DEFAULT_REDIS:
        raise RuntimeError("no throwaway redis-server is set: refusing hanoi's default localhost:6379")
    return DEFAULT_REDIS[-1]


def _shim() -> dict[str, types.ModuleType]:
    package = types.ModuleType("hanoi")
    api = types.ModuleType("hanoi.api")
    api.Rollout = layer.Rollout  # type: ignore[attr-defined]
    api.RolloutException = layer.RolloutException  # type: ignore[attr-defined]
    backend = types.ModuleType("hanoi.backend")
    backend.Feature = layer.Feature  # type: ignore[attr-defined]
    backend.MemoryBackEnd = layer.MemoryBackEnd  # type: ignore[attr-defined]
    backend.RedisBackEnd = RedisBackEnd  # type: ignore[attr-defined]
    backend.RedisHighPerfBackEnd = RedisHighPerfBackEnd  # type: ignore[attr-defined]
    package.api = api  # type: ignore[attr-defined]
    package.backend = backend  # type: ignore[attr-defined]
    return {"hanoi": package, "hanoi.api": api, "hanoi.backend": backend}


def load(root: Path) -> dict[str, types.ModuleType]:
    """Import hanoi's test files (unchanged) with ``hanoi`` mapped to the layer."""
    tests = root / "tests"
    shim = _shim()
    saved = {name: sys.modules.get(name) for name in shim}
    sys.modules.update(shim)
    try:
        modules = {}
        for name in TEST_FILES:
            spec = importlib.util.spec_from_file_location(f"hanoi_sdist_tests.{name}", tests / f"{name}.py")
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            modules[name] = module
        return modules
    finally:  # the test classes hold their own references; leave no `hanoi` behind
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
