"""Where packages come from: pip's own configuration (pip.conf, PIP_* variables) given to uv as options."""

from __future__ import annotations

import configparser
import os
import sys
from pathlib import Path

# uv reads none of pip's settings; these are pip's keys that say where packages come from.
PIP_KEYS = {"index-url": "--index-url", "extra-index-url": "--extra-index-url", "find-links": "--find-links",
            "no-index": "--no-index"}
UV_OWN = ("UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS", "UV_NO_INDEX")


def pip_config_files(environ: dict[str, str]) -> list[Path]:
    """pip's configuration files in the order pip reads them (a later one overrides an earlier one)."""
    if environ.get("PIP_CONFIG_FILE") == os.devnull:
        return []
    xdg = environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(os.pathsep)
    home = Path(environ.get("HOME", "~")).expanduser()
    config_home = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    files = [*(Path(d) / "pip" / "pip.conf" for d in reversed(xdg) if d), Path("/etc/pip.conf"),
             home / ".pip" / "pip.conf", config_home / "pip" / "pip.conf", Path(sys.prefix) / "pip.conf"]
    if environ.get("PIP_CONFIG_FILE"):
        files.append(Path(environ["PIP_CONFIG_FILE"]))
    return files


def pip_index_options(environ: dict[str, str] | None = None) -> list[str]:
    """``--index-url``/``--extra-index-url``/``--find-links``/``--no-index`` as pip would use them.

    So a machine set up for pip (a private index, a local wheel folder) builds the same with uv. Several
    indexes are searched as pip does (best version from any), not uv's first-index-wins. Nothing when uv is
    configured itself (UV_INDEX_URL, UV_DEFAULT_INDEX, ...).
    """
    environ = dict(os.environ) if environ is None else environ
    if any(name in environ for name in UV_OWN):
        return []
    settings: dict[str, str] = {}
    for path in pip_config_files(environ):
        parser = configparser.RawConfigParser()
        try:
            parser.read(path)
        except (OSError, configparser.Error):
            continue
        for section in ("global", "install"):
            if parser.has_section(section):
                settings.update({k: v for k, v in parser.items(section) if k in PIP_KEYS})
    for key in PIP_KEYS:  # PIP_INDEX_URL beats the files, as in pip
        value = environ.get(f"PIP_{key.upper().replace('-', '_')}")
        if value is not None:
            settings[key] = value
    return options_of(settings)


def options_of(settings: dict[str, str]) -> list[str]:
    """pip's settings -> uv options (each location once)."""
    options: list[str] = []
    for key, value in settings.items():
        if key == "no-index":
            options += ["--no-index"] if value.strip().lower() in ("1", "true", "yes", "on") else []
            continue
        for item in value.split():
            if f"{PIP_KEYS[key]}={item}" not in options:
                options.append(f"{PIP_KEYS[key]}={item}")
    if any(o.startswith("--extra-index-url") for o in options):
        options.append("--index-strategy=unsafe-best-match")
    return options
