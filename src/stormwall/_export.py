"""
``stormwall dashboards export DIR``: the shipped dashboard files, written.

The Grafana dashboard, the alert rules and the provisioning files.

The files live in the repository's top-level ``dashboards/`` folder; the
wheel ships them as package data under ``stormwall/_dashboards`` (see
``[tool.hatch.build.targets.wheel.force-include]`` in pyproject.toml). A
source checkout (an editable install) has no ``_dashboards``: the files are
then read from ``dashboards/`` beside ``src/``. Standard library only.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import TYPE_CHECKING, Final


if TYPE_CHECKING:
    from importlib.resources.abc import Traversable


__all__ = ["FILES", "ExportError", "export", "source"]

# What is exported (and shipped in the wheel), relative to ``dashboards/``.
# Not the README (its links point into the repository) nor ``typecheck/``
# (a CI check of the JSON, with its own npm dependencies).
FILES: Final = (
    "stormwall-overview.json",
    "alerts.yml",
    "alerts_test.yml",
    "provisioning/dashboards/stormwall.yml",
    "provisioning/datasources/stormwall.yml",
)


class ExportError(Exception):
    """Why nothing was exported, in one line for the user."""


def source() -> Traversable:
    """
    Where the dashboard files are: the package data, else the checkout's.

    Raises:
        ExportError: neither holds them (a broken install).
    """
    shipped = importlib.resources.files("stormwall").joinpath("_dashboards")
    if shipped.is_dir():
        return shipped
    checkout = Path(__file__).resolve().parents[2] / "dashboards"
    if (checkout / FILES[0]).is_file():
        return checkout
    raise ExportError(
        "the dashboard files are not installed with this copy of stormwall "
        f"(no {shipped} and no {checkout}); reinstall it from a wheel"
    )


def export(directory: Path, *, force: bool = False) -> list[Path]:
    """
    Write every file of `FILES` under ``directory``; the paths written.

    Nothing is written when one of them exists and ``force`` is false, or
    when a shipped file is missing.

    Raises:
        ExportError: a file exists (without ``force``), ``directory`` is not
            a directory, a shipped file is missing, or writing failed.
    """
    origin = source()
    contents: dict[Path, bytes] = {}
    for name in FILES:
        item = origin.joinpath(*name.split("/"))
        if not item.is_file():
            raise ExportError(
                f"{name} is missing from {origin}; reinstall stormwall"
            )
        contents[directory.joinpath(*name.split("/"))] = item.read_bytes()
    if directory.exists() and not directory.is_dir():
        raise ExportError(f"{directory} exists and is not a directory")
    if not force:
        existing = [str(path) for path in contents if path.exists()]
        if existing:
            more = len(existing) - 1
            raise ExportError(
                f"{existing[0]} already exists"
                + (f" (and {more} more)" if more else "")
                + "; pass --force to overwrite"
            )
    written = []
    try:
        for path, data in contents.items():
            if path.is_dir():
                raise ExportError(f"{path} is a directory")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            written.append(path)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        where = exc.filename or directory
        raise ExportError(f"cannot write {where}: {reason}") from None
    return written
