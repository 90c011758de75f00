"""The status page in a real headless browser (Debian's chromium through chromium-driver, driven by selenium)
against a daemon under load with a failing function; and its guards: api.token, api.ui.write, CSRF."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from bridge.testing import Daemon, free_port, write_config, write_handler

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
HANDLER = """
    def handler(event, context):
        if event.get("html"):
            raise ValueError("cannot render " + event["html"])
        return {"ok": True}
"""
# An event that would run code if the page put it in as markup: a script, and an image whose error handler runs.
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
TOKEN = "t0ken-for-the-status-page-test"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage")


def browser(width: int = 1280, height: int = 900) -> webdriver.Chrome:
    """Debian's chromium, headless, with a fresh profile and nothing that reaches out to the network."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "install them with: apt-get install chromium chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=ChromeService(driver), options=options)


def request(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    """(status, JSON body, response headers) of one HTTP request."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, _json(resp.read()), resp.headers
    except urllib.error.HTTPError as err:
        return err.code, _json(err.read()), err.headers


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode(errors="replace")


def invoke(base: str, function: str, payload: dict[str, Any], kind: str = "RequestResponse") -> int:
    return request(f"{base}/2015-03-31/functions/{function}/invocations", json.dumps(payload).encode(),
                   {"X-Amz-Invocation-Type": kind})[0]


@contextlib.contextmanager
def load(base: str, inbox: Path) -> Iterator[None]:
    """Sync calls that succeed, async events that fail (carrying markup), files into the watched folder."""
    stop = threading.Event()

    def run() -> None:
        n = 0
        while not stop.wait(0.05):  # the load's pace, not a synchronisation
            n += 1
            invoke(base, "ok", {"n": n})
            if n % 4 == 0:
                invoke(base, "failing", {"html": HOSTILE, "n": n}, "Event")
                (inbox / f"file-{n}.txt").write_text("x")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


def make_config(tmp_path: Path, listen: str, api: dict[str, Any]) -> Path:
    code = write_handler(tmp_path, "fn", HANDLER)
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    return write_config(tmp_path / "config.yaml", {
        "state_dir": str(tmp_path / "state"), "api": {"listen": listen, **api},
        "functions": {"ok": {"handler": "app.handler", "code": str(code)},
                      "failing": {"handler": "app.handler", "code": str(code),
                                  "async": {"maximum_retry_attempts": 0}}},
        "sources": [{"name": "inbox", "type": "directory", "path": str(inbox), "function": "ok"}],
    })


def texts(driver: webdriver.Chrome, table: str) -> list[list[str]]:
    """The text of every body cell of a table, row by row."""
    return driver.execute_script(
        "return [...document.querySelectorAll(`#${arguments[0]} tbody tr`)]"
        ".map(r => [...r.cells].map(c => c.textContent))", table)


def dead_letter_ids(driver: webdriver.Chrome) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll('#dead-letters tbody tr')]"
                                 ".map(r => r.dataset.id)")


def page_figures(driver: webdriver.Chrome) -> dict[str, Any]:
    functions = {r[0]: r[1:] for r in texts(driver, "functions")}
    sources = {r[0]: r[1:] for r in texts(driver, "sources")}
    legend = driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#legend b')].map(b => [b.dataset.series,"
        " b.textContent]))")
    return {"functions": functions, "sources": sources, "legend": legend,
            "depth": driver.find_element(By.ID, "queue-depth").text,
            "dead": driver.find_element(By.ID, "dead-count").text}


def api_figures(overview: dict[str, Any]) -> dict[str, Any]:
    """What the page must show for ``overview`` (the same JSON the page reads)."""
    last = overview["chart"][-1]
    return {
        "functions": {f["name"]: [f"{f['workers']} / {f['limit']}", js(f["in_flight"]), js(f["invocations"]),
                                  js(f["errors"]), js(f["p50_ms"]), js(f["p99_ms"])] for f in overview["functions"]},
        "sources": {s["name"]: [s["type"], s["function"], s["state"], js(s["events"]), s["last_error"] or ""]
                    for s in overview["sources"]},
        "legend": {k: js(last[k]) for k in ("events_per_s", "errors_per_s", "depth")},
        "depth": js(overview["queue"]["depth"]), "dead": js(overview["dead_letters"]),
    }


def js(value: Any) -> str:
    """A figure as the page writes it: JavaScript's String() (1.0 is "1"), a dash for none."""
    if value is None:
        return "\u2013"  # the en dash fmtNum writes
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def shows_the_api(driver: webdriver.Chrome, base: str, seen: list[Any]) -> bool:
    """The page shows exactly what the daemon reports (the figures hold still once the load stopped)."""
    seen[:] = [page_figures(driver), api_figures(request(f"{base}/ui/api/overview")[1])]
    return seen[0] == seen[1]


def wait_until_it_shows_the_api(driver: webdriver.Chrome, base: str) -> None:
    seen: list[Any] = []
    try:
        WebDriverWait(driver, 60, poll_frequency=0.2).until(lambda d: shows_the_api(d, base, seen))
    except TimeoutException:
        raise AssertionError(f"the page shows {seen[0]}\nthe daemon reports {seen[1]}") from None


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    """A full-page PNG under tests/artifacts/ (kept for a person to look at)."""
    ARTIFACTS.mkdir(exist_ok=True)
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(driver.get_window_size()["width"], height + 40)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


@pytest.fixture
def chromium() -> Iterator[webdriver.Chrome]:
    driver = browser()
    try:
        yield driver
    finally:
        driver.quit()


def test_the_page_shows_live_figures_and_redrives_and_runs_nothing_from_events(tmp_path: Path, chromium) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    path = make_config(tmp_path, f"127.0.0.1:{port}", {"ui": {"write": True}})
    wait = WebDriverWait(chromium, 60, poll_frequency=0.2, ignored_exceptions=[StaleElementReferenceException])
    with Daemon(path):
        with load(base, tmp_path / "inbox"):
            chromium.get(base + "/")
            # Under load: the tables fill and the chart gets its points (one every 5 s) with the rates in them.
            wait.until(lambda d: len(texts(d, "failures")) >= 2 and texts(d, "failures")[0][1] == "failing")
            wait.until(lambda d: int(d.find_element(By.CSS_SELECTOR, "polyline[data-series=events_per_s]")
                                     .get_attribute("data-points")) >= 2)
            wait.until(lambda d: float(page_figures(d)["legend"]["events_per_s"]) > 0)
            figures = page_figures(chromium)
            assert int(figures["functions"]["ok"][2]) > 0 and int(figures["functions"]["failing"][3]) > 0
            assert figures["sources"]["inbox"][:3] == ["directory", "ok", "running"]
            assert float(figures["legend"]["errors_per_s"]) > 0
            screenshot(chromium, "status-page-under-load.png")
        # The load stopped: the figures hold still, and the page must show exactly what the daemon reports.
        wait_until_it_shows_the_api(chromium, base)
        # Markup from an event is text: shown as typed, nothing ran, no element was made from it.
        failure = texts(chromium, "failures")[0]
        assert HOSTILE in failure[3]
        assert chromium.execute_script("return window.__pwned") is None
        assert chromium.execute_script("return document.querySelectorAll('script').length") == 1
        assert not chromium.find_elements(By.CSS_SELECTOR, "main img")
        # The failure's request id links to the function's log lines for that request.
        request_id = failure[2]
        chromium.find_element(By.LINK_TEXT, request_id).click()
        wait.until(lambda d: f"START RequestId: {request_id}" in d.find_element(By.ID, "logs-text").text)
        assert "cannot render" in chromium.find_element(By.ID, "logs-text").text
        # A dead letter opens with its AWS record, and redrives from the page (write is on).
        wait.until(lambda d: texts(d, "dead-letters") and texts(d, "dead-letters")[0][1] == "failing")
        entry_id = dead_letter_ids(chromium)[0]
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f'#dead-letters tr[data-id="{entry_id}"] a').click()
                   or True)  # the table is redrawn every 2 s: a click on a row just replaced is tried again
        wait.until(lambda d: entry_id in d.find_element(By.ID, "dead-record").text)
        record = json.loads(chromium.find_element(By.ID, "dead-record").text)
        assert record["record"]["requestContext"]["condition"] == "RetriesExhausted"
        assert record["record"]["requestPayload"]["html"] == HOSTILE
        assert chromium.execute_script("return window.__pwned") is None
        screenshot(chromium, "status-page-dead-letter.png")
        before = request(f"{base}/ui/api/dead-letters")[1]["total"]
        chromium.find_element(By.ID, "redrive").click()
        wait.until(lambda d: entry_id not in dead_letter_ids(d))
        listed = [e["id"] for e in request(f"{base}/ui/api/dead-letters")[1]["entries"]]
        assert entry_id not in listed
        # The redriven event failed again (the function always fails on it): a new dead letter, same payload.
        wait.until(lambda d: request(f"{base}/ui/api/dead-letters")[1]["total"] == before)
        # The list filters by function: none of ok's, all of failing's.
        select = Select(chromium.find_element(By.ID, "dead-filter"))
        select.select_by_value("ok")
        wait.until(lambda d: texts(d, "dead-letters") == [["none"]])
        select.select_by_value("failing")
        wait.until(lambda d: (rows := texts(d, "dead-letters")) and all(r[1:2] == ["failing"] for r in rows))
        chromium.get(base + "/")
        wait_until_it_shows_the_api(chromium, base)
        screenshot(chromium, "status-page.png")
        chromium.set_window_size(390, 844)  # a phone
        screenshot(chromium, "status-page-phone.png")


def test_guards_token_off_loopback_and_403_without_write(tmp_path: Path, chromium) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    path = make_config(tmp_path, f"0.0.0.0:{port}", {"token": TOKEN})  # not loopback; write stays off
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with Daemon(path):
        assert invoke(base, "failing", {"html": HOSTILE}, "Event") == 202
        assert request(f"{base}/ui/api/overview")[0] == 401
        assert request(f"{base}/ui/api/overview", headers={"Authorization": "Bearer wrong-token-wrong-token"})[0] == 401
        assert request(f"{base}/bridge/status")[0] == 401
        assert request(f"{base}/ui/api/overview", headers=bearer)[0] == 200
        # `GET /` is the page for a browser, and S3's ListBuckets for an SDK (the S3 API shares api.listen).
        status, page, _ = request(f"{base}/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
        assert status == 200 and page.startswith("<!doctype html>")
        s3 = boto3.client("s3", endpoint_url=base, region_name="us-east-1")
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["inbox"]  # the watched folder
        status, body, _ = request(f"{base}/ui/login", json.dumps({"token": "nope"}).encode())
        assert status == 401
        # The CLI sends the config's api.token.
        cli = subprocess.run([sys.executable, "-m", "bridge.cli", "status", "--json", "--config", str(path)],
                             capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        assert {f["name"] for f in json.loads(cli.stdout)["functions"]} == {"ok", "failing"}
        # Without write, actions are refused even posted by hand: with the session's CSRF token, with the token.
        status, session, headers = request(f"{base}/ui/api/session", headers=bearer)
        assert status == 200 and session["write"] is False and session["needs_token"] is True
        cookie = headers["Set-Cookie"].split(";")[0]
        entry = wait_for_dead_letter(base, bearer)
        body = json.dumps({"ids": [entry]}).encode()
        for extra in ({"Cookie": cookie, "X-CSRF-Token": session["csrf"]}, bearer):
            for action in ("redrive", "purge"):
                status, answer, _ = request(f"{base}/ui/api/dead-letters/{action}", body,
                                            {"Content-Type": "application/json", **extra})
                assert status == 403 and "api.ui.write" in answer["message"], answer
        assert wait_for_dead_letter(base, bearer) == entry, "the entry is still there"
        # The browser: the page asks for the token, then shows the daemon; its actions are off.
        chromium.get(base + "/")
        WebDriverWait(chromium, 30).until(lambda d: d.find_element(By.ID, "signin").is_displayed())
        assert not chromium.find_element(By.ID, "main").is_displayed()
        chromium.find_element(By.ID, "token").send_keys(TOKEN)
        chromium.find_element(By.CSS_SELECTOR, "#signin-form button").click()
        WebDriverWait(chromium, 30).until(lambda d: texts(d, "dead-letters") and texts(d, "dead-letters")[0][1]
                                          == "failing")
        WebDriverWait(chromium, 30, ignored_exceptions=[StaleElementReferenceException]).until(
            lambda d: d.find_element(By.CSS_SELECTOR, "#dead-letters tbody tr a").click()
            or d.find_element(By.ID, "dead-letter").is_displayed())
        assert not chromium.find_element(By.ID, "redrive").is_enabled()
        assert not chromium.find_element(By.ID, "purge").is_enabled()


def wait_for_dead_letter(base: str, headers: dict[str, str]) -> str:
    from bridge.testing import wait_until

    entries = wait_until(lambda: request(f"{base}/ui/api/dead-letters", headers=headers)[1]["entries"], timeout=30)
    return entries[0]["id"]


def test_fuzz_the_pages_actions_and_queries_get_4xx_never_a_traceback(tmp_path: Path) -> None:
    """Any body posted to the actions (write on, the right CSRF token) and any log query: a 4xx with one log
    line, or an answer; never a 500 (Hypothesis, bounded by the profile in tests/conftest.py)."""
    from hypothesis import given
    from hypothesis import strategies as st

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with Daemon(make_config(tmp_path, f"127.0.0.1:{port}", {"ui": {"write": True}})) as daemon:
        _, session, headers = request(f"{base}/ui/api/session")
        auth = {"Cookie": headers["Set-Cookie"].split(";")[0], "X-CSRF-Token": session["csrf"]}
        json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=40),
                                   lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                                       st.sampled_from(["ids", "all", "x"]) | st.text(max_size=5), inner, max_size=3),
                                   max_leaves=10)
        bodies = st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode())

        @given(bodies, st.sampled_from(["redrive", "purge"]), st.text(max_size=80), st.text(max_size=80))
        def check(body: bytes, action: str, function: str, request_id: str) -> None:
            status, answer, _ = request(f"{base}/ui/api/dead-letters/{action}", body,
                                        {"Content-Type": "application/json", **auth})
            assert status in (400, 404), (status, answer)
            query = urllib.parse.urlencode({"function": function, "request_id": request_id})
            assert request(f"{base}/ui/api/logs?{query}")[0] in (200, 404)
            entry = urllib.parse.quote(request_id, safe="") or "x"
            assert request(f"{base}/ui/api/dead-letters/{entry}")[0] == 404

        check()
        assert not daemon.find("api.unexpected_error") and not daemon.find("http.unexpected_error")
        assert not any("Traceback" in line for line in daemon.raw)
        assert daemon.find("ui.bad_request")
