"""The shipped unit under a real systemd: installed as README.md says, in a container booted by systemd-nspawn.

The host's systemd is not PID 1 here, but `systemd-nspawn -D / --volatile=yes --boot` boots Debian's own
systemd over the host's /usr in a container with an empty /etc and /var. README.md's first "Run it as a
service" block (the venv in /opt/lambda-bridge) runs on the host into a folder bound at /opt/lambda-bridge,
because it needs the package index; the other three blocks run inside, as written, from driver.sh, which also
installs the test's config and handlers, acts, and records what systemd and the journal saw. The container's
network is private (loopback only), so the service's port 9001 is its own; with no network manager there,
systemd-networkd-wait-online is masked (else network-online.target, which the unit waits for, takes 2 min).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent
BOOT_TIMEOUT = 120  # seconds for the whole container run: boot, the checks, power-off
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # a root shell's PATH on Debian

OK = """
    import os
    def handler(event, context):
        for record in event.get("Records", []):
            key = record["s3"]["object"]["key"]
            with open(f"/srv/inbox/done/{key}.txt", "w") as out:  # the watched folder: ReadWritePaths=/srv/inbox
                out.write(context.aws_request_id)
        print("ok", context.aws_request_id)
        return {"ok": True}
"""
BOOM = """
    def handler(event, context):
        raise ValueError("boom from the service")
"""
CONFIG = """
    state_dir: ${STATE_DIRECTORY:-/var/lib/lambda-bridge}
    api: {listen: "127.0.0.1:9001"}
    functions:
      ok: {handler: app.handler, code: /srv/handlers/ok}
      boom: {handler: app.handler, code: /srv/handlers/boom}
    sources:
      - {name: uploads, type: directory, path: /srv/inbox, function: ok, suffix: .jpg}
"""


def readme_blocks() -> list[str]:
    """README.md's systemd blocks, parsed as .ci/readme_commands.py parses them."""
    spec = importlib.util.spec_from_file_location("readme_commands", REPO / ".ci" / "readme_commands.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]  # its dataclass looks itself up there
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return [b.body for b in module.blocks((REPO / "README.md").read_text()) if b.mark == "systemd"]


@pytest.fixture
def work(tmp_path: Path):
    """A copy of the working tree (the README's "cloned folder"), the venv folder and the results folder.

    The venv must sit outside /tmp, /var/tmp and /root: its scripts name their interpreter by absolute path,
    bound at the same path in the container, and the unit's PrivateTmp= and ProtectHome= hide those."""
    venv = Path("/var/lib") / f"lambda-bridge-test-{uuid.uuid4().hex[:8]}"
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "var", "*.egg-info",
                                                              ".pytest_cache", ".ruff_cache", "bench"))
    yield src, venv, tmp_path
    shutil.rmtree(venv, ignore_errors=True)


def test_the_unit_installed_as_the_readme_says(work) -> None:
    src, venv, tmp = work
    assert shutil.which("systemd-nspawn"), "systemd-nspawn is missing: apt-get install systemd-container"
    blocks = readme_blocks()
    assert len(blocks) == 4, "install the package; config and unit; check and reload; the drop-in"
    assert "/opt/lambda-bridge" in blocks[0]
    # Block 1 on the host, into the folder bound at /opt/lambda-bridge, with a root shell's PATH (Debian's python3).
    subprocess.run(["bash", "-eo", "pipefail", "-c", blocks[0].replace("/opt/lambda-bridge", str(venv))], cwd=src,
                   env={**os.environ, "PATH": ROOT_PATH}, check=True, timeout=600)
    results, box = tmp / "results", tmp / "work"
    results.mkdir()
    _lay_out(box, blocks)
    _boot(src, venv, box, results)
    check_results(results)


def check_results(results: Path) -> None:
    """What the driver recorded: every step succeeded, and systemd and the journal saw what they should."""
    steps = dict(line.rsplit(" ", 1) for line in (results / "steps.txt").read_text().splitlines())
    log = (results / "driver.log").read_text()
    assert (results / "finished").exists(), log[-4000:]
    assert all(code == "0" for code in steps.values()), f"{steps}\n{log[-4000:]}"

    ready = _show(results / "ready.txt")
    assert (ready["ActiveState"], ready["SubState"]) == ("active", "running"), "READY=1 reached systemd"
    assert ready["DynamicUser"] == "yes" and ready["ProtectSystem"] == "strict", "the hardening is on"
    assert ready["Delegate"] == "yes", "the service's cgroup is the daemon's to give workers memory limits"
    assert ready["Documentation"] == "file:///opt/lambda-bridge/README.md"  # and it exists: step "documented"
    dropin = _show(results / "dropin.txt")
    assert "/srv/inbox" in dropin["ReadWritePaths"] and "/srv/handlers" in dropin["ReadOnlyPaths"]
    reloaded = _show(results / "reloaded.txt")
    assert reloaded["ActiveState"] == "active" and reloaded["NRestarts"] == "0", "reload without a restart"
    assert reloaded["WatchdogUSec"] == "2s"
    assert int(_show(results / "watchdog-2.txt")["WatchdogTimestampMonotonic"]) > 0
    assert json.loads((results / "boom.json").read_text())["error"] == "Unhandled"
    assert json.loads((results / "ok.json").read_text())["error"] is None

    broken = (results / "broken-status.txt").read_text()  # the step's exit code 0 says: running
    assert "daemon: running (pid" in broken and "has errors" in broken, broken
    modes = (results / "index-modes.txt").read_text().split()
    assert modes[0] == "700" and modes[2] == "600", modes  # /run/lambda-bridge and the daemon's entry

    stopped = _show(results / "stopped.txt")
    assert (stopped["ActiveState"], stopped["Result"], stopped["ExecMainStatus"]) == ("inactive", "success", "0")
    assert stopped["NRestarts"] == "0", "never restarted: no watchdog kill, no crash"
    _check_journal(results)


def _check_journal(results: Path) -> None:
    """journald filed each line at the priority the daemon gave it: -p warning shows the failures only."""
    entries = [json.loads(line) for line in (results / "journal.json").read_text().splitlines()]
    events = []
    for entry in entries:
        try:
            event = json.loads(entry["MESSAGE"])
        except (ValueError, TypeError):
            continue  # systemd's own lines (Started ..., Stopping ...)
        events.append((int(entry["PRIORITY"]), event))
    names = {(e["event"], e.get("function")): p for p, e in events}
    # a success's REPORT is debug: at the service's info level it is in the function's log file only
    assert names[("invoke.report", "boom")] == 4 and ("invoke.report", "ok") not in names
    assert names[("service.ready", None)] == 6 and names[("reload.applied", None)] == 6
    assert any(e["event"] == "service.stopped" for _, e in events)
    # How memory_size is enforced: a cgroup per worker where the host's cgroup v2 has the memory controller,
    # else the /proc watch, with the reason (a hybrid cgroup v1/v2 host, as this project's CI box, has none).
    chosen = [e for _, e in events if e["event"] == "memory.limits"]  # once per start (the drop-in restarts it)
    assert chosen and all(c["mode"] == "cgroup" or (c["mode"] == "rss" and c["reason"]) for c in chosen), chosen
    print("memory limits under the unit:", chosen)
    warnings = (results / "journal-warning.txt").read_text()
    shown = [json.loads(line) for line in warnings.splitlines() if line.startswith("{")]
    assert shown and all(e.get("function") == "boom" for e in shown), warnings
    assert any(e.get("error") == "boom from the service" for e in shown)


def _lay_out(box: Path, blocks: list[str]) -> None:
    """What the container gets at /work: the README blocks, the driver, its unit, the config and handlers."""
    (box / "handlers" / "ok").mkdir(parents=True)
    (box / "handlers" / "boom").mkdir(parents=True)
    (box / "handlers" / "ok" / "app.py").write_text(textwrap.dedent(OK))
    (box / "handlers" / "boom" / "app.py").write_text(textwrap.dedent(BOOM))
    (box / "config.yaml").write_text(textwrap.dedent(CONFIG))
    for number, body in enumerate(blocks, start=1):
        (box / f"readme-{number}.sh").write_text(body)
    shutil.copy(HERE / "driver.sh", box / "driver.sh")
    (box / "lb-driver.service").write_text(textwrap.dedent("""
        [Unit]
        Description=lambda-bridge unit test driver
        After=basic.target
        [Service]
        Type=oneshot
        ExecStart=/bin/bash /work/driver.sh
        ExecStopPost=/bin/systemctl poweroff --no-block
        TimeoutStartSec=100
    """))


def _boot(src: Path, venv: Path, box: Path, results: Path) -> None:
    """Boot the container with the driver wanted; it powers off when done. Bounded by BOOT_TIMEOUT."""
    name = f"lbtest{uuid.uuid4().hex[:8]}"
    cmd = ["systemd-nspawn", "--quiet", "-D", "/", "-M", name, "--register=no", "--keep-unit", "--volatile=yes",
           "--private-network", f"--bind-ro={src}:/src", f"--bind={venv}:/opt/lambda-bridge",
           f"--bind-ro={venv}:{venv}", f"--bind-ro={box}:/work", f"--bind={results}:/results",
           f"--bind-ro={box / 'lb-driver.service'}:/etc/systemd/system/lb-driver.service",
           # No network manager runs in the container: network-online.target would wait 2 min for networkd.
           "--boot", "systemd.firstboot=off", "systemd.wants=lb-driver.service",
           "systemd.mask=systemd-networkd-wait-online.service"]
    with (results / "boot.log").open("wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            proc.wait(BOOT_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(f"the container did not power off within {BOOT_TIMEOUT} s:\n"
                        + _tail(results / "driver.log") + _tail(results / "boot.log"))


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else f"({path.name} missing)\n"


def _show(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
