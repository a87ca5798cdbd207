"""Reading the TOML config file (the file system part of config loading; the typed
classes and their validation live in :mod:`mm_trio.domain.config`)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from mm_trio.domain.config import Config, ConfigError, config_from_dict, validate


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; :class:`ConfigError` naming the file if unreadable or invalid."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(p)!r}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {str(p)!r} is not a text file (not UTF-8 at byte {exc.start}); "
            "expected TOML"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from None


def load_config(path: str | Path | None) -> Config:
    """Read and validate a TOML file; ``None`` gives the defaults."""
    if path is None:
        return validate(Config())
    return config_from_dict(read_toml(path))
