"""The status page's parts without a daemon: who may read and act (guard), the samples, failures, percentiles."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st

from bridge.config.model import ApiConfig, parse_config
from bridge.errors import ConfigError
from bridge.model import InvokeResult
from bridge.ui.guard import COOKIE, CSRF_HEADER, Guard, is_loopback
from bridge.ui.recent import MESSAGE_CHARS, Recent, failure, nearest_rank
from bridge.ui.routes import _ids

TOKEN = "a-token-of-twenty-chars"


def get(path: str, host: str = "127.0.0.1:9001", **headers: str) -> Any:
    return make_mocked_request("GET", path, headers={"Host": host, **headers})


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True),
                                                ("localhost", True), ("0.0.0.0", False), ("10.1.2.3", False),
                                                ("::", False)])
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_loopback_without_token_is_open_to_loopback_names_only() -> None:
    guard = Guard(ApiConfig(listen="127.0.0.1:9001"))
    assert guard.refusal(get("/ui/api/overview")) is None
    assert guard.refusal(get("/ui/api/overview", host="localhost:9001")) is None
    rebound = guard.refusal(get("/ui/api/overview", host="attacker.example:9001"))
    assert rebound is not None and rebound.status == 403


def test_off_loopback_without_token_the_page_is_locked_and_says_how_to_open_it() -> None:
    refused = Guard(ApiConfig(listen="0.0.0.0:9001")).refusal(get("/ui/api/overview"))
    assert refused is not None and refused.status == 403
    assert "set api.token" in json.loads(refused.text)["message"]


def test_with_a_token_a_bearer_header_or_a_signed_in_session_reads() -> None:
    guard = Guard(ApiConfig(listen="0.0.0.0:9001", token=TOKEN))
    assert guard.refusal(get("/ui/api/overview")).status == 401
    assert guard.refusal(get("/ui/api/overview", Authorization="Bearer wrong-wrong-wrong-wrong")).status == 401
    assert guard.refusal(get("/ui/api/overview", Authorization=f"Bearer {TOKEN}")) is None
    sid, _ = guard.new_session(authenticated=True)
    assert guard.refusal(get("/ui/api/overview", Cookie=f"{COOKIE}={sid}")) is None
    anonymous, _ = guard.new_session(authenticated=False)
    assert guard.refusal(get("/ui/api/overview", Cookie=f"{COOKIE}={anonymous}")).status == 401


def test_a_token_on_loopback_is_asked_for_too() -> None:
    guard = Guard(ApiConfig(listen="127.0.0.1:9001", token=TOKEN))
    assert guard.needs_token and guard.refusal(get("/ui/api/overview")).status == 401


def test_actions_need_write_then_the_sessions_csrf_token() -> None:
    guard = Guard(ApiConfig(listen="127.0.0.1:9001"))
    sid, session = guard.new_session(authenticated=False)
    good = get("/ui/api/dead-letters/redrive", Cookie=f"{COOKIE}={sid}", **{CSRF_HEADER: session.csrf})
    assert guard.action_refusal(good, write=False).status == 403
    assert guard.action_refusal(good, write=True) is None
    wrong = get("/x", Cookie=f"{COOKIE}={sid}", **{CSRF_HEADER: "guess"})
    assert guard.action_refusal(wrong, write=True).status == 403
    other_sid, _ = guard.new_session(authenticated=False)  # another session's cookie with this one's token
    assert guard.action_refusal(get("/x", Cookie=f"{COOKIE}={other_sid}", **{CSRF_HEADER: session.csrf}),
                                write=True).status == 403


def test_sessions_are_bounded() -> None:
    guard = Guard(ApiConfig(listen="127.0.0.1:9001"))
    first, _ = guard.new_session(authenticated=False)
    for _ in range(300):
        guard.new_session(authenticated=False)
    assert len(guard.sessions) == 256 and first not in guard.sessions


def test_a_short_token_and_unknown_ui_keys_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="at least 16 characters"):
        parse_config("api: {listen: '127.0.0.1:9001', token: short}\n")
    with pytest.raises(ConfigError, match=r"api\.ui\.writes"):
        parse_config("api: {ui: {writes: true}}\n")


def test_percentiles_are_nearest_rank() -> None:
    values = sorted(float(n) for n in range(1, 101))
    assert nearest_rank(values, 0.5) == 50.0 and nearest_rank(values, 0.99) == 99.0
    assert nearest_rank([7.0], 0.99) == 7.0
    recent = Recent()
    assert recent.percentiles("f") == {"p50_ms": None, "p99_ms": None}
    for ms in range(1, 101):
        recent.observe("f", InvokeResult("r", b"{}"), ms / 1000)
    assert recent.percentiles("f") == {"p50_ms": 50.0, "p99_ms": 99.0}


def test_failures_keep_lambdas_error_and_the_request_id() -> None:
    body = json.dumps({"errorType": "ValueError", "errorMessage": "x" * 2000}).encode()
    row = failure("f", InvokeResult("req-1", body, "Unhandled"))
    assert row["error_type"] == "ValueError" and row["request_id"] == "req-1"
    assert len(row["error_message"]) == MESSAGE_CHARS
    assert failure("f", InvokeResult("r", b"not json", "Unhandled"))["error_message"] == "not json"


def test_a_sample_holds_the_rates_since_the_last_one_and_the_depth() -> None:
    recent = Recent()
    since = recent.mark(now=100.0)
    for n in range(10):
        recent.observe("f", InvokeResult(str(n), b"{}", "Unhandled" if n % 2 else None), 0.001)
    since = recent.sample(since, 7, now=102.0)
    recent.sample(since, 0, now=104.0)
    assert [(p["events_per_s"], p["errors_per_s"], p["depth"]) for p in recent.chart()] == [(5.0, 2.5, 7),
                                                                                            (0.0, 0.0, 0)]


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                    max_leaves=20))
def test_any_action_body_is_ids_or_refused(body: Any) -> None:
    ids = _ids(body)
    assert ids is None or (ids and all(isinstance(i, str) and i for i in ids))


@given(st.binary(max_size=3000), st.sampled_from([None, "Unhandled"]))
def test_a_failure_row_from_any_answer(payload: bytes, error: str | None) -> None:
    row = failure("f", InvokeResult("r", payload, error or "Unhandled"))
    assert isinstance(row["error_message"], str) and len(row["error_message"]) <= MESSAGE_CHARS
