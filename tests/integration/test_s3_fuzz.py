"""Fuzzing the S3 API of a running daemon: random keys, queries, ranges, headers and XML bodies never get a
500, never touch a file outside a bucket's folder, and never stop the daemon."""

from __future__ import annotations

import http.client
import os
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.testing import Daemon, free_port, write_config, write_handler

BUCKETS = ("fz", "plain")
SEGMENTS = st.sampled_from(["..", ".", "", "a", "b c", "+", "%", "%2e%2e", "%00", "\x00", "é", "x" * 300, "link",
                            ".lambda-bridge.1.tmp", "a/b", "~", "?", "#"]) | st.text(max_size=12)
KEYS = st.lists(SEGMENTS, max_size=5).map("/".join) | st.binary(max_size=40).map(lambda b: b.decode("latin-1"))
QUERY = st.dictionaries(
    st.sampled_from(["uploads", "uploadId", "partNumber", "delete", "list-type", "prefix", "delimiter", "max-keys",
                     "continuation-token", "start-after", "encoding-type", "fetch-owner", "marker", "location",
                     "acl", "response-content-type", "part-number-marker", "max-parts", "versionId", "max-uploads",
                     "key-marker", "upload-id-marker"]),
    st.text(max_size=20) | st.sampled_from(["2", "1", "0", "-1", "url", "true", "a" * 48, "99999999999"]), max_size=4)
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"),
                      max_size=30)  # what HTTP lets a header carry (latin-1's upper half too)
HEADERS = st.dictionaries(
    st.sampled_from(["Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since",
                     "Content-MD5", "x-amz-content-sha256", "x-amz-decoded-content-length", "x-amz-copy-source",
                     "x-amz-metadata-directive", "Content-Type", "x-amz-meta-a", "Content-Encoding",
                     "x-amz-trailer", "x-amz-checksum-crc32", "Host", "Cache-Control"]),
    st.sampled_from(["bytes=0-1", "bytes=-1", "bytes=5-", "bytes=9-2", "bytes=0-0,2-3", "*", '"abc"',
                     "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "aws-chunked",
                     "x-amz-checksum-crc32", "fz/a", "/fz/../../etc/passwd", "plain/%2e%2e/x", "REPLACE", "COPY",
                     "fz.localhost", "plain.example:1", "Sun, 06 Nov 1994 08:49:37 GMT", "1Bm/1A==", "-5"])
    | HEADER_TEXT, max_size=5)
XML = st.builds(
    lambda root, items: f"<{root}>{''.join(items)}</{root}>".encode(),
    st.sampled_from(["Delete", "CompleteMultipartUpload", "Other"]),
    st.lists(st.sampled_from(["<Object><Key>../x</Key></Object>", "<Object><Key>a</Key></Object>",
                              "<Quiet>true</Quiet>", "<Part><PartNumber>1</PartNumber><ETag>\"x\"</ETag></Part>",
                              "<Part><PartNumber>a</PartNumber></Part>", "<Object/>", "<!DOCTYPE x>",
                              "<Object><Key></Key></Object>"]), max_size=4))
BODIES = st.binary(max_size=300) | XML | st.sampled_from([b"5\r\nhello\r\n0\r\n\r\n", b"zz\r\n", b"0;x\r\n\r\n"])


def outside(tmp_path: Path) -> set[str]:
    """Every path under tmp_path that is not inside a bucket's folder or the state directory."""
    found = set()
    for root, dirs, files in os.walk(tmp_path):
        rel = os.path.relpath(root, tmp_path)
        if rel.split(os.sep)[0] in (*BUCKETS, "state"):
            continue
        found.update(os.path.join(rel, name) for name in dirs + files)
    return {path for path in found if "__pycache__" not in path}  # the no-op function's own bytecode


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("s3fuzz")
    for name in BUCKETS:
        (tmp_path / name).mkdir()
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "passwd").write_text("secret")
    os.symlink(tmp_path / "secret", tmp_path / "fz" / "link")
    (tmp_path / "fz" / "a").write_bytes(b"0123456789")
    port = free_port()
    code = write_handler(tmp_path, "code", "def handler(event, context):\n    return None\n")
    config = write_config(tmp_path / "config.yaml", {
        "state_dir": str(tmp_path / "state"), "api": {"listen": f"127.0.0.1:{port}"},
        "functions": {"noop": {"handler": "app.handler", "code": str(code), "reserved_concurrency": 1}},
        "sources": [{"type": "directory", "name": "fz", "path": str(tmp_path / "fz"), "function": "noop"}],
        "buckets": {"plain": str(tmp_path / "plain")}})
    with Daemon(config) as daemon:
        daemon.wait_for("directory.ready", source="fz", timeout=60)
        yield tmp_path, port, outside(tmp_path), daemon


def send(port: int, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host="Host" in headers, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@given(method=st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE"]), bucket=st.sampled_from([*BUCKETS, "nope"]),
       key=KEYS, query=QUERY, headers=HEADERS, body=BODIES, safe=st.sampled_from(["/", "/%", "/?&=", ""]))
def test_fuzz_s3_api(target, method: str, bucket: str, key: str, query: dict[str, str], headers: dict[str, str],
                     body: bytes, safe: str) -> None:
    tmp_path, port, before, daemon = target
    path = f"/{bucket}/" + quote(key.encode("utf-8", "surrogateescape"), safe=safe)
    if query:
        path += "?" + "&".join(f"{quote(k)}={quote(v)}" if v else quote(k) for k, v in query.items())
    status, answer = send(port, method, path, headers, body if method in ("PUT", "POST") else b"")
    assert status != 500 and status < 600, (status, answer[:500], daemon.tail(5))
    if status >= 400 and method != "HEAD":
        assert answer.startswith(b"<?xml") and b"<Error><Code>" in answer, answer[:300]
    assert outside(tmp_path) == before, "nothing written or removed outside the buckets' folders"
    assert (tmp_path / "secret" / "passwd").read_text() == "secret"
    assert send(port, "GET", "/healthz", {}, b"")[0] == 200


COPY_SOURCES = st.sampled_from(["fz/a", "/fz/a", "plain/a", "fz/link/passwd", "fz/../secret/passwd",
                                "fz/%2e%2e/secret/passwd", "/fz/a?versionId=x", "nope/a", "fz/", "fz", "",
                                "fz/a%00b", "%", "fz/%C3%A9", "fz/" + "x" * 300]) | HEADER_TEXT
COPY_RANGES = st.sampled_from(["bytes=0-9", "bytes=0-0", "bytes=5-4", "bytes=0-10", "bytes=-1", "bytes=3-",
                               "bytes=0-99999999999999999999", "bytes=0-1,2-3", " bytes=1-2 ", ""]) | HEADER_TEXT


@given(source=COPY_SOURCES, span=st.none() | COPY_RANGES, number=st.sampled_from(["1", "2", "0", "10001", "x"]))
def test_fuzz_upload_part_copy(target, source: str, span: str | None, number: str) -> None:
    """UploadPartCopy into a real upload: any copy source and range gives S3's answer, never a file outside a
    bucket, never a part copied from outside one."""
    tmp_path, port, before, daemon = target
    status, answer = send(port, "POST", "/fz/up?uploads", {}, b"")
    assert status == 200, answer
    upload = answer.split(b"<UploadId>")[1].split(b"</UploadId>")[0].decode()
    headers = {"x-amz-copy-source": source, **({"x-amz-copy-source-range": span} if span is not None else {})}
    status, answer = send(port, "PUT", f"/fz/up?uploadId={upload}&partNumber={number}", headers, b"")
    assert status != 500 and status < 600, (status, answer[:500], daemon.tail(5))
    if status == 200:
        assert b"<CopyPartResult " in answer
        copied = next((tmp_path / "state" / "s3-uploads" / upload).glob("00*.*")).read_bytes()
        inside = [f for name in BUCKETS for f in (tmp_path / name).rglob("*") if f.is_file() and not f.is_symlink()]
        assert any(copied in f.read_bytes() for f in inside), "a part is a piece of an object of a bucket"
    else:
        assert answer.startswith(b"<?xml") and b"<Error><Code>" in answer, answer[:300]
    assert send(port, "DELETE", f"/fz/up?uploadId={upload}", {}, b"")[0] == 204
    assert outside(tmp_path) == before and (tmp_path / "secret" / "passwd").read_text() == "secret"
