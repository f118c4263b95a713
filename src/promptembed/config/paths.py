"""The one place that resolves paths: calibration files by name and hash.

A stored config names a calibration file, never places it, so a collection and its
config can move. This module finds the file again.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

SEARCH_PATH_ENV = "PROMPTEMBED_CALIBRATION_PATH"
"""Directories (``os.pathsep``-separated) searched for a calibration file by name."""

_HASHED_NAME = re.compile(r"^calibration-([0-9a-f]{12})\.npz$")


def hash_in_name(path: str | Path) -> str | None:
    """The hash carried by a ``calibration-<hash>.npz`` name, else ``None``."""
    match = _HASHED_NAME.match(Path(path).name)
    return match.group(1) if match else None


def resolve_calibration(
    reference: str | Path,
    *,
    sha256: str | None = None,
    near: str | Path | None = None,
    stores: Sequence[str | Path] = (),
) -> Path:
    """Find a calibration file by path or name: portable configs name it, never place it.

    Looked up in order: next to ``near`` (the config file's folder), the reference itself
    (an existing path, or relative to the working directory), each directory of
    ``$PROMPTEMBED_CALIBRATION_PATH``, then the copy kept inside each embedded store of
    ``stores`` (:func:`store_calibration`), so a store folder moved or copied elsewhere
    brings its calibration along.

    Args:
        reference: A path or a file name (``calibration-<hash>.npz``).
        sha256: The content hash the file must have (12 hex); default: from its name.
        near: A folder to look in first (where the config file lives).
        stores: Embedded Chroma store folders whose kept calibrations may hold it.

    Returns:
        The path of the file with that content.

    Raises:
        FileNotFoundError: Naming the hash and every place looked in.
        ValueError: If the file found has another content hash.

    Example:
        >>> resolve_calibration("examples/configs/calibration-2769b3163945.npz").name
        'calibration-2769b3163945.npz'

    """
    reference = Path(reference).expanduser()
    places = [reference] if reference.is_absolute() else [Path.cwd() / reference]
    if near is not None:
        places.insert(0, Path(near) / reference)
    extra = [d for d in os.environ.get(SEARCH_PATH_ENV, "").split(os.pathsep) if d]
    places += [Path(d).expanduser() / reference.name for d in extra]
    places += [store_calibration(store, reference.name) for store in stores]
    found = next((p for p in places if p.is_file()), None)
    if found is None:
        named = hash_in_name(reference)
        looked = ", ".join(str(p.parent) for p in places)
        raise FileNotFoundError(
            f"calibration {reference.name} (sha256 {sha256 or named or 'unknown'}) not found; "
            f"looked in: {looked}. Put the file next to the config, or add its folder to "
            f"${SEARCH_PATH_ENV}"
        )
    if sha256 is not None:
        actual = hashlib.sha256(found.read_bytes()).hexdigest()[:12]
        if actual != sha256:
            raise ValueError(
                f"calibration {found} has content hash {actual}, but sha256 {sha256} was "
                "recorded: it is another calibration; use the original file"
            )
    return found.resolve()


STORE_CALIBRATIONS = "promptembed-calibrations"
"""The folder inside an embedded store where the calibrations its collections use are kept."""


def store_calibration(store: str | Path, name: str) -> Path:
    """Where an embedded store keeps a calibration file (by its hashed file name).

    Example:
        >>> store_calibration("db", "calibration-2769b3163945.npz").as_posix()
        'db/promptembed-calibrations/calibration-2769b3163945.npz'

    """
    return Path(store).expanduser() / STORE_CALIBRATIONS / Path(name).name
