"""The MQTT source's config model."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator

from bridge.config.base import SourceBase, Strict, error_at
from bridge.errors import ExpressionError


class TlsConfig(Strict):
    """TLS for mqtts:// brokers; verification is on unless ``insecure`` says otherwise."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False

    @field_validator("ca_file", "cert_file", "key_file", mode="before")
    @classmethod
    def _file(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        base = Path((info.context or {}).get("base_dir", "."))
        path = (base / Path(value).expanduser()).resolve()
        if not path.is_file():
            raise ValueError(f"file {str(path)!r} does not exist; fix the path or remove the key")
        return path

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file (the client certificate it belongs to)")
        try:
            self.ssl_context()
        except (OSError, ssl.SSLError) as err:  # a file that is not PEM, or a key that does not fit the cert
            raise ValueError(f"cannot load the TLS files: {err}; give PEM files (CA, client cert, its key)") from None
        return self

    def ssl_context(self) -> ssl.SSLContext:
        """The client-side TLS context: system CAs unless ``ca_file``; no verification only if ``insecure``."""
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file is not None:
            context.load_cert_chain(self.cert_file, self.key_file)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


class MqttSourceConfig(SourceBase):
    """An AWS IoT topic rule on a local MQTT broker."""

    type: Literal["mqtt"]
    broker: str
    client_id: str | None = None
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    # A file holding the password (e.g. ${CREDENTIALS_DIRECTORY}/mqtt-password under systemd's
    # LoadCredential=), read at each connect so the secret never sits in the config file.
    password_file: Path | None = None
    tls: TlsConfig = TlsConfig()
    sql: str
    qos: Literal[0, 1] = 1
    keepalive: Annotated[int, Field(ge=5, le=3600)] = 60

    @field_validator("broker")
    @classmethod
    def _broker(cls, value: str) -> str:
        parts = urlsplit(value)
        if "@" in parts.netloc:  # checked first, so no message below ever echoes a password
            raise ValueError("give only mqtt[s]://HOST[:PORT]; credentials go in username/password")
        try:
            parts.port  # noqa: B018 -- raises ValueError on a port that is not a number in 0-65535
        except ValueError:
            raise ValueError(f"{value!r} has an invalid port; expected mqtt://HOST[:PORT]") from None
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"{value!r} is not mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
        if parts.path.strip("/") or parts.query:
            raise ValueError(f"{value!r}: give only mqtt[s]://HOST[:PORT], without a path or query")
        return value

    @field_validator("password", mode="before")
    @classmethod
    def _password(cls, value: Any) -> Any:
        # YAML reads `password: 12345` as a number; the user meant the text (and it must never be echoed).
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("password_file", mode="before")
    @classmethod
    def _password_file(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        path = (Path((info.context or {}).get("base_dir", ".")) / Path(value).expanduser()).resolve()
        if not path.is_file():
            raise ValueError(f"file {str(path)!r} does not exist; write the password into it, or use password")
        return path

    @model_validator(mode="after")
    def _credentials(self) -> MqttSourceConfig:
        if self.password is not None and self.password_file is not None:
            raise error_at("password_file", "give either password or password_file, not both")
        if (self.password is not None or self.password_file is not None) and self.username is None:
            key = "password" if self.password is not None else "password_file"
            raise error_at(key, "a password needs a username (MQTT sends no password without one); add username")
        return self

    def read_password(self) -> str | None:
        """The password: given inline, or read from ``password_file`` (trailing newline dropped)."""
        if self.password_file is None:
            return self.password
        return self.password_file.read_text().rstrip("\r\n")

    @classmethod
    def check(cls, indexed: list[tuple[int, Any]], queues: dict[str, Any]) -> list[str]:
        """Two sources with one client id on one broker would keep taking each other's session over."""
        problems, seen = [], {}
        for i, source in indexed:
            key = (source.address[:2], source.effective_client_id)
            if key in seen:
                problems.append(f"sources[{i}].client_id: {source.effective_client_id!r} is also the client id of "
                                f"sources[{seen[key]}] on the same broker; the broker would disconnect one for the "
                                "other: give each source its own client_id")
            seen.setdefault(key, i)
        return problems

    @field_validator("sql")
    @classmethod
    def _sql(cls, value: str) -> str:
        from bridge.sources.mqtt.iot_sql import parse_rule

        try:
            parse_rule(value)
        except ExpressionError as err:
            raise ValueError(str(err)) from None
        return value

    @model_validator(mode="after")
    def _tls_needs_mqtts(self) -> MqttSourceConfig:
        if self.tls != TlsConfig() and not self.broker.startswith("mqtts:"):
            raise ValueError("tls settings apply only to mqtts:// brokers; use mqtts:// or remove tls")
        return self

    @property
    def effective_client_id(self) -> str:
        """A stable client id, so the broker keeps the persistent session across restarts."""
        return self.client_id or f"lambda-bridge-{self.name}"

    @property
    def address(self) -> tuple[str, int, bool]:
        """(host, port, tls): the port defaults to 1883 for mqtt:// and 8883 for mqtts://."""
        parts = urlsplit(self.broker)
        tls = parts.scheme == "mqtts"
        return parts.hostname or "", parts.port or (8883 if tls else 1883), tls


MODEL = MqttSourceConfig
