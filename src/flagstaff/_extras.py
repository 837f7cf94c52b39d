"""A clear error when an optional integration's package is not installed."""

from __future__ import annotations


def missing_extra(exc: ModuleNotFoundError, package: str, extra: str, module: str) -> ModuleNotFoundError:
    """The error to raise when importing ``module`` failed with ``exc``.

    If what is missing is ``package`` (the extra's own dependency), a ModuleNotFoundError
    (so ``except ImportError`` still works) that names the extra to install; a bare
    ``No module named 'flask'`` does not say that flagstaff has an extra for it. Anything
    else missing is a different problem: ``exc`` itself.
    """
    if exc.name is None or exc.name.split(".")[0] != package:
        return exc
    return ModuleNotFoundError(
        f"{module} needs {package}, which is not installed: pip install 'flagstaff[{extra}]'",
        name=exc.name,
    )
