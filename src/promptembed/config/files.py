"""Reading a config file: TOML (or a dict) to a validated :class:`Config`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from promptembed.config.models import Config
from promptembed.config.paths import resolve_calibration

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib


def load_config(source: str | Path | dict[str, Any] | Config) -> Config:
    """Load and validate a config from a TOML file, a dict or a ``Config``.

    Relative store paths in a TOML file are resolved against the file's folder.

    Args:
        source: Path to a ``.toml`` file, a mapping of the same shape, or a Config.

    Returns:
        The validated :class:`Config`.

    Raises:
        FileNotFoundError: If the file does not exist.
        pydantic.ValidationError: If a field is unknown or invalid.

    """
    if isinstance(source, Config):
        return source
    if isinstance(source, dict):
        return Config.model_validate(source)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    # Relative folders in a file are relative to the file, wherever the command runs.
    for table, key in (
        ("store", "path"),
        ("retrieval", "lexical_path"),
        ("embedder", "embedding_cache"),
    ):
        section = data.get(table)
        if isinstance(section, dict) and isinstance(section.get(key), str):
            section[key] = _near(path.parent, section[key])
    embedder = data.get("embedder")
    if isinstance(embedder, dict) and isinstance(embedder.get("calibration"), str):
        # Next to the config, on the search path, or kept inside the config's own store.
        store = data.get("store")
        stores = [store["path"]] if isinstance(store, dict) and store.get("path") else []
        embedder["calibration"] = str(
            resolve_calibration(embedder["calibration"], near=path.parent, stores=stores)
        )
    return Config.model_validate(data)


def _near(folder: Path, value: str) -> str:
    """``value`` as an absolute path, resolved against ``folder`` when relative."""
    target = Path(value).expanduser()
    return str(target if target.is_absolute() else (folder / target).resolve())
