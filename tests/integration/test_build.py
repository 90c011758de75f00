"""Function environments end to end: `sam-import`, `lambda-bridge build` and `lambda-bridge run` as subprocesses.

Real uv installing real wheels from the package index (one shared uv cache for the session keeps it cheap),
real workers under awslambdaric, boto3 as the Invoke API's client.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.testing import Daemon, free_port, invoke, lambda_client, wait_until, write_config, write_handler

TEMPLATES = Path(__file__).resolve().parents[1] / "sam" / "templates"


@pytest.fixture
def uv_cache() -> dict[str, str]:
    """The session's wheel cache (tests/conftest.py), passed explicitly to every command that builds."""
    return {"UV_CACHE_DIR": os.environ["UV_CACHE_DIR"]}


def bridge(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args], capture_output=True, text=True,
                          timeout=timeout, check=False, env={**os.environ, **(env or {})})


def png(width: int, height: int) -> bytes:
    """A red RGB picture as PNG, written with the standard library (the function decodes it with Pillow)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_sam_app_with_requirements_and_a_layer_runs_unchanged(tmp_path: Path, uv_cache: dict[str, str]) -> None:
    port = free_port()
    config = tmp_path / "config.yaml"
    imported = bridge("sam-import", str(TEMPLATES / "image-layer" / "template.yaml"), "-o", str(config),
                      "--listen", f"127.0.0.1:{port}")
    assert imported.returncode == 0, imported.stderr
    assert "AWSLambdaPowertoolsPythonV3" in imported.stderr and "is given by ARN" in imported.stderr
    checked = bridge("check", "--config", str(config), env=uv_cache)
    assert checked.returncode == 0, checked.stderr
    assert "run `lambda-bridge build ThumbnailFunction`" in checked.stderr
    built = bridge("build", "--config", str(config), env=uv_cache)
    assert built.returncode == 0, built.stderr
    assert "ThumbnailFunction: built" in built.stderr and "pillow" in built.stderr.lower()
    again = bridge("build", "--config", str(config), env=uv_cache)
    assert again.returncode == 0 and "ThumbnailFunction: up to date" in again.stderr, again.stderr
    with Daemon(config, env=uv_cache) as daemon:
        client = lambda_client(f"http://127.0.0.1:{port}", read_timeout=120)
        response, body = invoke(client, "ThumbnailFunction", {"width": 640, "height": 480})
        assert "FunctionError" not in response, body
        assert body["size"] == [64, 48] and body["png_bytes"] > 0 and body["sdk"]
        _, body = invoke(client, "ThumbnailFunction", {"image": base64.b64encode(png(300, 100)).decode()})
        assert body["size"] == [64, 21]
        assert not daemon.find("build.started")  # built beforehand: run found it ready


HANDLERS = {
    "report": """
        import importlib.util, sys
        def handler(event, context):
            import boto3, which
            found = {m: importlib.util.find_spec(m) is not None for m in ("aiohttp", "pydantic", "bridge")}
            return {"path": sys.path, "boto3": boto3.__file__, "which": which.NAME, "found": found}
    """,
    "six": """
        import six
        def handler(event, context):
            return {"six": six.__version__}
    """,
}


def _layer(root: Path, name: str) -> Path:
    (root / name / "python").mkdir(parents=True)
    (root / name / "python" / "which.py").write_text(f"NAME = {name!r}\n")
    (root / name / "bin").mkdir()
    return root / name


def _functions(root: Path) -> dict[str, dict]:
    report = write_handler(root, "report", HANDLERS["report"])
    own = write_handler(root, "own", HANDLERS["report"])
    (own / "boto3").mkdir()
    (own / "boto3" / "__init__.py").write_text("# the function's own boto3, vendored in its code folder\n")
    layers = [str(_layer(root, "first")), str(_layer(root, "second"))]
    six_code = write_handler(root, "six", HANDLERS["six"])
    (six_code / "requirements.txt").write_text("six==1.16.0\n")
    bad = write_handler(root, "bad", HANDLERS["six"])
    (bad / "requirements.txt").write_text("six\nno-such-package-lambda-bridge-test==1.0\n")
    hostile = write_handler(root, "hostile", HANDLERS["six"])
    (hostile / "requirements.txt").write_text("-e ../..\n")
    source_layer = write_handler(root, "helpers", "import six\nSIX = six.__file__\n", "helpers.py")  # sam build's
    (source_layer / "requirements.txt").write_text("six==1.16.0\n")  # layout: modules at the top, BuildMethod
    uses = write_handler(root, "uses", "import helpers\ndef handler(event, context):\n"
                                       "    return {'helpers': helpers.__file__, 'six': helpers.SIX}\n")
    return {
        "uses": {"handler": "app.handler", "code": str(uses), "layers": [str(source_layer)]},
        "report": {"handler": "app.handler", "code": str(report), "layers": layers},
        "own": {"handler": "app.handler", "code": str(own), "layers": layers[:1]},
        "six": {"handler": "app.handler", "code": str(six_code)},
        "bad": {"handler": "app.handler", "code": str(bad)},
        "hostile": {"handler": "app.handler", "code": str(hostile)},
        "old": {"handler": "app.handler", "code": str(report), "runtime": "python3.99", "layers": layers},
    }


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Path]]:
    root = tmp_path_factory.mktemp("envs")
    port = free_port()
    config = write_config(root / "config.yaml", {"state_dir": str(root / "state"),
                                                 "api": {"listen": f"127.0.0.1:{port}"},
                                                 "functions": _functions(root)})
    with Daemon(config) as daemon:
        daemon.client = lambda_client(f"http://127.0.0.1:{port}", read_timeout=120)
        yield daemon, config


def test_lambda_sys_path_order_and_only_the_runtime_sdk(app: tuple[Daemon, Path]) -> None:
    daemon, config = app
    _, body = invoke(daemon.client, "report")
    root = config.parent
    state = root / "state"
    first, second = str(root / "first" / "python"), str(root / "second" / "python")
    runtime = next(p for p in body["path"] if p.startswith(str(state / "runtimes")))
    # /var/task, then /opt/python (the later layer wins: Lambda extracts it over the earlier one), then
    # /var/runtime, then the interpreter's own standard library.
    assert body["path"][:4] == [str(root / "report"), second, first, runtime]
    assert body["which"] == "second"
    assert body["boto3"].startswith(runtime)  # the runtime's SDK, never listed by the function
    assert body["found"] == {"aiohttp": False, "pydantic": False, "bridge": False}  # not the daemon's venv
    _, own = invoke(daemon.client, "own")
    assert own["boto3"] == str(root / "own" / "boto3" / "__init__.py")  # a function's own boto3 wins
    assert own["which"] == "first"


def test_a_layer_laid_out_for_sam_build_gets_its_requirements(app: tuple[Daemon, Path]) -> None:
    daemon, config = app
    response, body = invoke(daemon.client, "uses")
    assert "FunctionError" not in response, body
    assert body["helpers"] == str(config.parent / "helpers" / "helpers.py")  # the layer's folder is its python/
    assert body["six"].startswith(str(config.parent / "state" / "envs"))  # its requirements.txt, installed
    shared = (config.parent / "state" / "envs" / "functions" / "six").resolve()  # the function "six"'s env:
    assert body["six"] == str(shared / "python" / "six.py")  # the same manifest text shares one environment


def test_requirements_installed_and_failures_contained(app: tuple[Daemon, Path]) -> None:
    daemon, _ = app
    response, body = invoke(daemon.client, "six")
    assert "FunctionError" not in response and body == {"six": "1.16.0"}
    response, body = invoke(daemon.client, "bad")
    assert response["FunctionError"] == "Unhandled" and body["errorType"] == "Runtime.ImportModuleError"
    assert "requirements.txt, line 2 ('no-such-package-lambda-bridge-test==1.0')" in body["errorMessage"]
    assert "not found in the package registry" in body["errorMessage"]  # the installer's own words
    [failed] = daemon.find("build.failed", function="bad")
    assert "line 2" in failed["error"]
    response, body = invoke(daemon.client, "hostile")
    assert body["errorType"] == "Runtime.ImportModuleError"
    assert "line 1: '-e ../..': option -e is not allowed" in body["errorMessage"]
    response, body = invoke(daemon.client, "old")  # python3.99 does not exist: the daemon's Python runs it
    assert "FunctionError" not in response and body["which"] == "second"
    assert daemon.find("function.interpreter_missing", function="old")
    response, body = invoke(daemon.client, "six")  # the others never stopped
    assert body == {"six": "1.16.0"}


def test_check_and_build_name_the_function_and_the_line(app: tuple[Daemon, Path], uv_cache: dict[str, str]) -> None:
    _, config = app
    checked = bridge("check", "--config", str(config), env=uv_cache)
    assert checked.returncode == 2
    assert "functions.hostile: " in checked.stderr and "line 1: '-e ../..'" in checked.stderr
    assert checked.stderr.count("no working python3.99 on PATH") == 1  # one warning, not an error
    built = bridge("build", "bad", "--config", str(config), env=uv_cache)
    assert built.returncode == 1
    assert "function bad: installing" in built.stderr and "line 2" in built.stderr
    hostile = bridge("build", "hostile", "--config", str(config), env=uv_cache)
    assert hostile.returncode == 2 and "function hostile: " in hostile.stderr and "option -e" in hostile.stderr


def test_a_missing_layer_folder_is_refused_and_the_rest_keeps_running(app: tuple[Daemon, Path]) -> None:
    daemon, config = app
    original = config.read_text()
    try:
        config.write_text(original.replace(str(config.parent / "first"), str(config.parent / "gone")))
        checked = bridge("check", "--config", str(config))
        assert checked.returncode == 2 and f"directory '{config.parent / 'gone'}'" in checked.stderr
        daemon.signal(signal.SIGHUP)
        invalid = daemon.wait_for("reload.invalid", timeout=30)  # one per function naming the folder
        assert all("layers" in event["problem"] and "gone" in event["problem"] for event in invalid)
        _, body = invoke(daemon.client, "report")
        assert body["which"] == "second"
    finally:
        config.write_text(original)


def test_a_changed_manifest_is_rebuilt_on_reload(app: tuple[Daemon, Path]) -> None:
    daemon, config = app
    manifest = config.parent / "six" / "requirements.txt"
    manifest.write_text("six==1.17.0\n")
    try:
        daemon.signal(signal.SIGHUP)
        daemon.wait_for("build.finished", count=2, function="six", timeout=120)  # the first: at start
        _, body = invoke(daemon.client, "six")
        assert body == {"six": "1.17.0"}
    finally:
        manifest.write_text("six==1.16.0\n")


@pytest.fixture
def stalled_download() -> Iterator[str]:
    """An http address that accepts connections and never answers: a download that hangs."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_build_killed_midway_leaves_nothing_that_looks_ready(tmp_path: Path, uv_cache: dict[str, str],
                                                               stalled_download: str) -> None:
    code = write_handler(tmp_path, "fn", HANDLERS["six"])
    (code / "requirements.txt").write_text(f"six @ {stalled_download}/six-1.16.0-py2.py3-none-any.whl\n")
    functions = {"fn": {"handler": "app.handler", "code": str(code)}}
    config = write_config(tmp_path / "config.yaml", {"state_dir": str(tmp_path / "state"), "functions": functions})
    envs = tmp_path / "state" / "envs"
    proc = subprocess.Popen([sys.executable, "-m", "bridge.cli", "build", "--config", str(config)],
                            env={**os.environ, **uv_cache}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        wait_until(lambda: list(envs.glob(".tmp-*/requirements.txt")), timeout=60)  # the installer is running
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert [p.name for p in envs.iterdir() if not p.name.startswith(".tmp-")] == []  # no environment, no link
    checked = bridge("check", "--config", str(config))
    assert "is not built yet" in checked.stderr
    cleaned = bridge("build", "--clean", "--config", str(config))
    assert cleaned.returncode == 0 and ".tmp-" in cleaned.stdout
    assert list(envs.iterdir()) == []


def other_python() -> tuple[str, str]:
    """(folder, 3.N) of an installed Python other than the daemon's: on PATH, or in pyenv's versions."""
    own = f"{sys.version_info[0]}.{sys.version_info[1]}"
    folders = os.environ.get("PATH", "").split(os.pathsep) + sorted(
        str(p) for p in Path("~/.pyenv/versions").expanduser().glob("3.*/bin"))
    for folder in folders:
        for exe in sorted(Path(folder).glob("python3.[0-9]*")) if Path(folder).is_dir() else []:
            version = exe.name.removeprefix("python")
            if version.replace(".", "").isdigit() and version != own and int(version.split(".")[1]) >= 9 and \
                    subprocess.run([str(exe), "-c", "pass"], capture_output=True, check=False).returncode == 0:
                return folder, version
    raise AssertionError("this test needs a Python 3.9+ other than the daemon's (e.g. apt install python3.12, "
                         "or pyenv install 3.12)")


def test_runtime_python3_n_runs_on_that_interpreter(tmp_path: Path, uv_cache: dict[str, str]) -> None:
    folder, version = other_python()
    code = write_handler(tmp_path, "fn", """
        import sys, six, boto3
        def handler(event, context):
            return {"python": "%d.%d" % sys.version_info[:2], "boto3": boto3.__file__, "six": six.__file__}
    """)
    (code / "requirements.txt").write_text("six==1.16.0\n")
    port = free_port()
    functions = {"fn": {"handler": "app.handler", "code": str(code), "runtime": f"python{version}"}}
    config = write_config(tmp_path / "config.yaml", {"state_dir": str(tmp_path / "state"), "functions": functions,
                                                     "api": {"listen": f"127.0.0.1:{port}"}})
    path = {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}", **uv_cache}
    built = bridge("build", "--config", str(config), env=path)
    assert built.returncode == 0 and f"installing awslambdaric and boto3 for python{version}" in built.stderr
    with Daemon(config, env=path) as daemon:
        _, body = invoke(lambda_client(f"http://127.0.0.1:{port}", read_timeout=120), "fn")
        assert not daemon.find("function.interpreter_missing")
    runtimes = tmp_path / "state" / "runtimes"
    assert body["python"] == version and body["boto3"].startswith(str(runtimes / f"python{version}-"))
    assert body["six"].startswith(str(tmp_path / "state" / "envs"))


def test_check_says_a_daemon_package_must_be_listed(tmp_path: Path) -> None:
    code = write_handler(tmp_path, "fn", "import aiohttp\ndef handler(event, context):\n    return 1\n")
    functions = {"fn": {"handler": "app.handler", "code": str(code)}}
    config = write_config(tmp_path / "config.yaml", {"state_dir": str(tmp_path / "state"), "functions": functions})
    checked = bridge("check", "--config", str(config))
    assert checked.returncode == 2 and "No module named 'aiohttp' (the daemon has it" in checked.stderr
    assert "list it in requirements.txt" in checked.stderr
