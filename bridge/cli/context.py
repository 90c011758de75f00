"""What every command shares: the global options, the config (loaded lazily) and the running daemon."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml

from bridge import runtime_file, runtime_index
from bridge.config.model import Config, default_state_dir, load_config, substitute_env
from bridge.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


def default_config_path() -> str:
    """``$LAMBDA_BRIDGE_CONFIG``, else ``/etc/lambda-bridge/config.yaml`` if present, else config/example.yaml."""
    if os.environ.get("LAMBDA_BRIDGE_CONFIG"):
        return os.environ["LAMBDA_BRIDGE_CONFIG"]
    system = Path("/etc/lambda-bridge/config.yaml")
    return str(system) if system.exists() else "config/example.yaml"


class State:
    """The command line's shared state: global options, then the config and the daemon, each found once."""

    def __init__(self) -> None:
        self.config_option: str | None = None
        self.json = False
        self._config: Config | None = None
        self._config_error: ConfigError | None = None
        self._daemon: runtime_file.RunningDaemon | bool | None = False  # False: not looked up yet
        self._told = False

    @property
    def config_path(self) -> str:
        """The config file: ``--config``, else the default path."""
        return self.config_option or default_config_path()

    def config(self) -> Config:
        """The validated config; raises ConfigError (every problem listed) when the file is invalid."""
        if self._config is None and self._config_error is None:
            try:
                self._config = load_config(self.config_path)
            except ConfigError as err:
                self._config_error = err
        if self._config_error is not None:
            raise self._config_error
        assert self._config is not None
        return self._config

    def valid_config(self) -> Config | None:
        """The config when the file is valid, else None (commands that can do without it go on)."""
        try:
            return self.config()
        except ConfigError:
            return None

    def state_dir(self) -> Path:
        """``state_dir`` of the config. While the file is invalid: the running daemon's (found by the file's
        path in the daemon index), else the YAML's value read leniently; a file that does not even parse,
        with no daemon running it, is the error to show (its state_dir cannot be known)."""
        config = self.valid_config()
        if config is not None:
            return config.state_dir
        running = runtime_index.lookup(self.config_path)
        if running is not None:
            if self._daemon is False:
                self._daemon = runtime_file.find(running)
            return running
        peeked = peek_state_dir(Path(self.config_path))
        if peeked is None:
            self.config()  # raises: the file's own problems
        assert peeked is not None
        return peeked

    def known_state_dir(self) -> Path | None:
        """``state_dir()``, or None when it cannot be known (a file that does not parse, and no daemon)."""
        try:
            return self.state_dir()
        except ConfigError:
            return None

    def daemon(self, *, quiet: bool = False) -> runtime_file.RunningDaemon | None:
        """The running daemon (from its runtime file); says once on stderr when its config differs
        (``quiet``: the caller shows that itself)."""
        if self._daemon is False:
            state_dir = self.known_state_dir()
            self._daemon = runtime_file.find(state_dir) if state_dir is not None else None
        daemon = self._daemon
        self._told = self._told or quiet
        if daemon is not None and not self._told:
            self._told = True
            drift = daemon.drift()
            if drift:
                note(drift)
        return daemon or None

    def api_url(self) -> str | None:
        """Where the running daemon's API answers: its runtime file, else the config's api.listen."""
        daemon = self.daemon()
        if daemon is not None:
            return daemon.api_url
        config = self.valid_config()
        if config is not None and config.api.address is not None:
            host, port = config.api.address
            return f"http://{host}:{port}"
        return None


def peek_state_dir(path: Path) -> Path | None:
    """``state_dir`` from a config file that may be invalid: the YAML value (``${VAR}`` substituted, relative
    to the file) or the default; None when the YAML does not parse (its state_dir is unknown); a file that
    cannot be read at all is the error the user needs to see."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError([f"cannot read config file: {err.strerror}"], source=str(path)) from err
    except yaml.YAMLError:
        return None
    value = data.get("state_dir") if isinstance(data, dict) else None
    if isinstance(value, str):
        value = substitute_env(value, os.environ, (), [])
        return (path.resolve().parent / Path(value).expanduser()).resolve()
    return default_state_dir()


def note(text: str) -> None:
    """A remark for the person at the terminal: always on stderr, so stdout stays program output."""
    click.echo(f"lambda-bridge: {text}", err=True)


def emit_json(value: Any) -> None:
    """Program output: JSON on stdout."""
    click.echo(json.dumps(value, indent=2, default=str))


pass_state = click.make_pass_decorator(State, ensure=True)


def _set_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(State).config_option = value


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(State).json = True


def global_options(command: F) -> F:
    """``--config`` and ``--json``, accepted before the subcommand and after it (on every command)."""
    command = click.option("--json", "json_output", is_flag=True, expose_value=False, callback=_set_json,
                           help="machine-readable JSON on stdout")(command)
    return click.option("--config", "-c", "config_option", metavar="FILE", expose_value=False,
                        callback=_set_config,
                        help="config file (default: $LAMBDA_BRIDGE_CONFIG, /etc/lambda-bridge/config.yaml "
                             "if present, else config/example.yaml)")(command)
