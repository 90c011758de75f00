"""A real mosquitto for tests: free ports, plain/TLS/password listeners, a persistence file, stop and restart."""

from __future__ import annotations

import datetime
import getpass
import ipaddress
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.enums import CallbackAPIVersion

from bridge.testing import free_port, wait_until

USER, PASSWORD = "device", "correct horse battery staple"


def find_mosquitto() -> tuple[str, str]:
    """Paths of ``mosquitto`` and ``mosquitto_passwd``; an AssertionError (a failure, not a skip) if missing."""
    broker = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    passwd = shutil.which("mosquitto_passwd")
    assert broker and passwd, "mosquitto is not installed; install it with: apt-get install mosquitto"
    return broker, passwd


# --- certificates ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    """PEM files: the test CA, the broker's certificate and key signed by it, and an unrelated CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    other_ca: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return path


def _builder(subject: str, issuer: str, key: ec.EllipticCurvePrivateKey,
             issuer_key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                           critical=False))


def _ca(directory: Path, name: str) -> tuple[Path, x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False)
    cert = (_builder(name, name, key, key).add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .add_extension(usage, critical=True).sign(key, hashes.SHA256()))
    return _write(directory / f"{name}.pem", cert), cert, key


def make_certs(directory: Path) -> Certs:
    """A test CA, a broker certificate for localhost/127.0.0.1 signed by it, and a second, unrelated CA."""
    ca_path, _, ca_key = _ca(directory, "test-ca")
    other_ca, _, _ = _ca(directory, "other-ca")
    key = ec.generate_private_key(ec.SECP256R1())
    names = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (_builder("localhost", "test-ca", key, ca_key).add_extension(names, critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    server = _write(directory / "server.pem", cert, key)
    return Certs(ca_path, server, server.with_suffix(".key"), other_ca)


# --- the broker ------------------------------------------------------------------------------------


class Mosquitto:
    """mosquitto on three free ports: plain (anonymous), TLS (anonymous), and plain with a password file.

    ``stop()`` is a graceful SIGTERM, on which mosquitto writes its persistence file; ``start()`` again
    reuses the same ports and that file, so persistent sessions and their queued messages survive.
    """

    def __init__(self, directory: Path, extra_config: str = "") -> None:
        self.broker, passwd = find_mosquitto()
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.certs = make_certs(directory)
        self.plain_port, self.tls_port, self.auth_port = free_port(), free_port(), free_port()
        subprocess.run([passwd, "-c", "-b", str(directory / "passwd"), USER, PASSWORD], check=True,
                       capture_output=True)
        self.config = directory / "mosquitto.conf"
        self.config.write_text(self._config_text(extra_config))
        self.log = directory / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _config_text(self, extra: str) -> str:
        c = self.certs
        return "\n".join([
            "per_listener_settings true", f"user {getpass.getuser()}", "persistence true",
            f"persistence_location {self.dir}/", "persistence_file mosquitto.db",
            "max_queued_messages 1000000", "log_dest stderr", "log_type error", "log_type warning", "log_type notice",
            f"listener {self.plain_port} 127.0.0.1", "allow_anonymous true",
            f"listener {self.tls_port} 127.0.0.1", "allow_anonymous true",
            f"cafile {c.ca}", f"certfile {c.server_cert}", f"keyfile {c.server_key}",
            f"listener {self.auth_port} 127.0.0.1", "allow_anonymous false", f"password_file {self.dir / 'passwd'}",
            extra, "",
        ])

    @property
    def url(self) -> str:
        """The plain, anonymous listener."""
        return f"mqtt://127.0.0.1:{self.plain_port}"

    @property
    def tls_url(self) -> str:
        """The TLS listener (its certificate names localhost and 127.0.0.1)."""
        return f"mqtts://localhost:{self.tls_port}"

    @property
    def auth_url(self) -> str:
        """The plain listener that wants USER / PASSWORD."""
        return f"mqtt://127.0.0.1:{self.auth_port}"

    def start(self, timeout: float = 20.0) -> Mosquitto:
        """Start mosquitto and wait until every listener accepts connections."""
        log = self.log.open("ab")
        self.proc = subprocess.Popen([self.broker, "-c", str(self.config)], stdout=log, stderr=log)
        log.close()
        try:
            wait_until(self._listening, timeout=timeout, interval=0.02)
        except TimeoutError:
            raise AssertionError(f"mosquitto did not listen within {timeout} s:\n{self.log.read_text()}") from None
        return self

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"mosquitto exited ({self.proc.returncode}):\n{self.log.read_text()}")
        for port in (self.plain_port, self.tls_port, self.auth_port):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                return False
        return True

    def stop(self, timeout: float = 20.0) -> None:
        """Graceful stop (SIGTERM): mosquitto saves its persistence file first."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout)
        self.proc = None

    def restart(self) -> None:
        """Stop and start again on the same ports with the same persistence file."""
        self.stop()
        self.start()

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Publisher:
    """A paho client that publishes and waits for the broker's PUBACK (the broker has accepted the message)."""

    def __init__(self, port: int, client_id: str = "test-publisher") -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False) -> paho.MQTTMessageInfo:
        """Publish without waiting; ``info.wait_for_publish()`` waits for the PUBACK."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        assert info.rc == paho.MQTT_ERR_SUCCESS, f"publish failed: {paho.error_string(info.rc)}"
        return info

    def send(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False) -> None:
        """Publish and wait until the broker acknowledged it."""
        self.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(timeout=10)

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
