"""The S3 API over watched folders: boto3 against the daemon, the events its writes produce, hostile keys."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest
from aws_lambda_powertools.utilities.parser.models import S3Model
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from bridge.testing import Daemon, free_port, wait_until, write_config, write_handler
from tests.integration.test_async_delivery import RECORDER, records


def s3_client(port: int, **config: Any):
    """boto3's S3 client on the bridge (path-style, as boto3 picks for an IP endpoint)."""
    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="y",
                        config=BotoConfig(retries={"max_attempts": 0}, **config))


class Bridge:
    """A daemon serving bucket ``photos`` (a directory source -> ``rec``) and ``out`` (buckets: only)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.photos, self.out = tmp_path / "photos", tmp_path / "out"
        self.photos.mkdir()
        self.out.mkdir()
        self.port = free_port()
        code = write_handler(tmp_path, "code-rec", RECORDER)
        self.config = write_config(tmp_path / "config.yaml", {
            "state_dir": str(tmp_path / "state"), "api": {"listen": f"127.0.0.1:{self.port}"},
            "functions": {"rec": {"handler": "app.handler", "code": str(code), "reserved_concurrency": 1,
                                  "environment": {"RECORD_FILE": str(tmp_path / "rec.jsonl")}}},
            "sources": [{"type": "directory", "name": "uploads", "path": str(self.photos), "function": "rec"}],
            "buckets": {"out": str(self.out)}})
        self.daemon = Daemon(self.config)
        self.s3 = s3_client(self.port)

    def seen(self) -> list[dict[str, Any]]:
        """Every S3 record ``rec`` received, validated against powertools' S3Model."""
        out = []
        for entry in records(self.tmp_path / "rec.jsonl"):
            S3Model.model_validate(entry["event"])
            out.extend(entry["event"]["Records"])
        return out

    def wait_records(self, count: int) -> list[dict[str, Any]]:
        try:
            wait_until(lambda: len(self.seen()) >= count, timeout=20)
        except TimeoutError:
            raise AssertionError(f"saw {self.seen()}\n{self.daemon.tail()}") from None
        return self.seen()


@pytest.fixture
def bridge(tmp_path: Path):
    b = Bridge(tmp_path)
    b.daemon.start()
    b.daemon.wait_for("directory.ready", source="uploads", timeout=60)
    yield b
    b.daemon.stop()
    b.daemon.kill()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def code_of(err: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    return err.value.response["Error"]["Code"], err.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_object_round_trip_with_metadata(bridge: Bridge) -> None:
    s3 = bridge.s3
    data = os.urandom(70_000)
    put = s3.put_object(Bucket="out", Key="dir/a b+c%.bin", Body=data, ContentType="image/x-test",
                        CacheControl="max-age=60", Metadata={"Owner": "me"},
                        ContentMD5=base64.b64encode(hashlib.md5(data).digest()).decode())
    assert put["ETag"] == f'"{md5(data)}"'
    assert (bridge.out / "dir" / "a b+c%.bin").read_bytes() == data
    got = s3.get_object(Bucket="out", Key="dir/a b+c%.bin")
    assert got["Body"].read() == data and got["ETag"] == put["ETag"] and got["ContentLength"] == len(data)
    assert got["ContentType"] == "image/x-test" and got["CacheControl"] == "max-age=60"
    assert got["Metadata"] == {"owner": "me"}
    head = s3.head_object(Bucket="out", Key="dir/a b+c%.bin")
    assert head["ContentLength"] == len(data) and head["Metadata"] == {"owner": "me"}
    part = s3.get_object(Bucket="out", Key="dir/a b+c%.bin", Range="bytes=10-19")
    assert part["Body"].read() == data[10:20] and part["ContentRange"] == f"bytes 10-19/{len(data)}"
    assert s3.get_object(Bucket="out", Key="dir/a b+c%.bin", Range="bytes=-5")["Body"].read() == data[-5:]
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket="out", Key="dir/a b+c%.bin", Range=f"bytes={len(data)}-")
    assert code_of(err) == ("InvalidRange", 416)
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket="out", Key="dir/a b+c%.bin", IfNoneMatch=put["ETag"])
    assert code_of(err)[1] == 304
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket="out", Key="dir/a b+c%.bin", IfMatch='"0000"')
    assert code_of(err) == ("PreconditionFailed", 412)
    (bridge.out / "dropped.json").write_text("{}")
    dropped = s3.get_object(Bucket="out", Key="dropped.json")
    assert dropped["ContentType"] == "application/json" and dropped["ETag"] == f'"{md5(b"{}")}"'
    copied = s3.copy_object(Bucket="out", Key="copy.bin", CopySource={"Bucket": "out", "Key": "dir/a b+c%.bin"})
    assert copied["CopyObjectResult"]["ETag"] == put["ETag"]
    assert s3.head_object(Bucket="out", Key="copy.bin")["ContentType"] == "image/x-test"
    s3.delete_object(Bucket="out", Key="copy.bin")
    assert not (bridge.out / "copy.bin").exists()
    assert s3.delete_objects(Bucket="out", Delete={"Objects": [{"Key": "dropped.json"}, {"Key": "nope"}]})[
        "Deleted"] == [{"Key": "dropped.json"}, {"Key": "nope"}]
    assert sorted(os.listdir(bridge.out)) == ["dir"], "no temporary or metadata file left in the folder"


def test_listing(bridge: Bridge) -> None:
    s3 = bridge.s3
    keys = ["a.txt", "b/1.txt", "b/2.txt", "b/c/3.txt", "d e+f.txt", "z.txt"]
    for key in keys:
        s3.put_object(Bucket="out", Key=key, Body=key.encode())
    listed = s3.list_objects_v2(Bucket="out")
    assert [o["Key"] for o in listed["Contents"]] == keys and listed["KeyCount"] == 6
    assert listed["Contents"][0]["ETag"] == f'"{md5(b"a.txt")}"' and listed["Contents"][0]["Size"] == 5
    top = s3.list_objects_v2(Bucket="out", Delimiter="/")
    assert [o["Key"] for o in top["Contents"]] == ["a.txt", "d e+f.txt", "z.txt"]
    assert top["CommonPrefixes"] == [{"Prefix": "b/"}]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="out", Prefix="b/", Delimiter="/")["Contents"]] == [
        "b/1.txt", "b/2.txt"]
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket="out", PaginationConfig={"PageSize": 2}))
    assert [o["Key"] for p in pages for o in p["Contents"]] == keys and len(pages) == 3
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="out", StartAfter="b/c/3.txt")["Contents"]] == keys[4:]
    assert "Owner" in s3.list_objects_v2(Bucket="out", FetchOwner=True)["Contents"][0]
    v1 = list(s3.get_paginator("list_objects").paginate(Bucket="out", PaginationConfig={"PageSize": 4}))
    assert [o["Key"] for p in v1 for o in p["Contents"]] == keys
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert names == ["out", "photos"]
    s3.head_bucket(Bucket="photos")
    assert s3.get_bucket_location(Bucket="out")["LocationConstraint"] is None


def test_an_object_never_looks_older_than_its_file(bridge: Bridge) -> None:
    """S3's times have whole seconds; truncating them made an object written at 12:00:00.6 look older than a
    local file changed at 12:00:00.3, so ``aws s3 sync`` copied it again on every run."""
    for n in range(5):  # five writes: a whole-second mtime (rounding changes nothing) is one chance in 10^9
        bridge.s3.put_object(Bucket="out", Key=f"f{n}.txt", Body=b"x")
        mtime = (bridge.out / f"f{n}.txt").stat().st_mtime
        head = bridge.s3.head_object(Bucket="out", Key=f"f{n}.txt")["LastModified"].timestamp()
        listed = bridge.s3.list_objects_v2(Bucket="out", Prefix=f"f{n}.txt")["Contents"][0]["LastModified"]
        assert head >= mtime and listed.timestamp() >= mtime and head - mtime < 1


def test_errors_are_s3s(bridge: Bridge) -> None:
    s3 = bridge.s3
    for call, expected in [
        (lambda: s3.get_object(Bucket="out", Key="missing"), ("NoSuchKey", 404)),
        (lambda: s3.get_object(Bucket="nosuch", Key="k"), ("NoSuchBucket", 404)),
        (lambda: s3.head_object(Bucket="out", Key="missing"), ("404", 404)),
        (lambda: s3.list_objects_v2(Bucket="nosuch"), ("NoSuchBucket", 404)),
        (lambda: s3.put_object(Bucket="out", Key="x", Body=b"abc", ContentMD5=base64.b64encode(b"0" * 16).decode()),
         ("BadDigest", 400)),
        (lambda: s3.put_object(Bucket="out", Key="../escape", Body=b"x"), ("InvalidArgument", 400)),
        (lambda: s3.get_object(Bucket="out", Key="a/../../etc/passwd"), ("InvalidArgument", 400)),
        (lambda: s3.copy_object(Bucket="out", Key="c", CopySource="out/../../etc/passwd"), ("InvalidArgument", 400)),
    ]:
        with pytest.raises(ClientError) as err:
            call()
        assert code_of(err) == expected
    assert not (bridge.tmp_path / "escape").exists() and not (bridge.out / "x").exists()


def test_symlinks_out_of_the_folder_are_not_followed(bridge: Bridge) -> None:
    secret = bridge.tmp_path / "secret"
    secret.mkdir()
    (secret / "key.txt").write_text("secret")
    os.symlink(secret, bridge.out / "link")
    os.symlink(secret / "key.txt", bridge.out / "file-link")
    s3 = bridge.s3
    for key in ("link/key.txt", "file-link"):
        with pytest.raises(ClientError) as err:
            s3.get_object(Bucket="out", Key=key)
        assert code_of(err)[1] == 404
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket="out", Key="link/new.txt", Body=b"x")
    assert code_of(err)[1] == 400
    assert os.listdir(secret) == ["key.txt"]
    assert "Contents" not in s3.list_objects_v2(Bucket="out", Prefix="link/")


def test_writes_produce_their_events_exactly_once(bridge: Bridge) -> None:
    s3 = bridge.s3
    s3.put_object(Bucket="photos", Key="red flower.jpg", Body=b"petals")
    s3.copy_object(Bucket="photos", Key="copy+1.jpg", CopySource={"Bucket": "photos", "Key": "red flower.jpg"})
    big = os.urandom(5 * 1024 * 1024)
    upload = s3.create_multipart_upload(Bucket="photos", Key="multi.bin")["UploadId"]
    etags = [s3.upload_part(Bucket="photos", Key="multi.bin", UploadId=upload, PartNumber=n, Body=body)["ETag"]
             for n, body in ((1, big), (2, b"tail"))]
    listed = s3.list_parts(Bucket="photos", Key="multi.bin", UploadId=upload)["Parts"]
    assert [p["PartNumber"] for p in listed] == [1, 2]
    done = s3.complete_multipart_upload(Bucket="photos", Key="multi.bin", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": e} for n, e in zip((1, 2), etags, strict=True)]})
    expected_etag = md5(bytes.fromhex(md5(big)) + bytes.fromhex(md5(b"tail"))) + "-2"
    assert done["ETag"] == f'"{expected_etag}"'
    assert s3.head_object(Bucket="photos", Key="multi.bin")["ETag"] == done["ETag"]
    s3.delete_object(Bucket="photos", Key="copy+1.jpg")
    seen = bridge.wait_records(4)
    names = [(r["eventName"], unquote_plus(r["s3"]["object"]["key"])) for r in seen]
    assert names == [("ObjectCreated:Put", "red flower.jpg"), ("ObjectCreated:Copy", "copy+1.jpg"),
                     ("ObjectCreated:CompleteMultipartUpload", "multi.bin"), ("ObjectRemoved:Delete", "copy+1.jpg")]
    assert seen[0]["s3"]["object"]["key"] == "red+flower.jpg" and seen[1]["s3"]["object"]["key"] == "copy%2B1.jpg"
    assert seen[0]["s3"]["object"]["eTag"] == md5(b"petals") and seen[0]["s3"]["object"]["size"] == 6
    assert seen[2]["s3"]["object"]["eTag"] == expected_etag and seen[2]["s3"]["object"]["size"] == len(big) + 4
    (bridge.photos / "barrier").write_text("x")
    wait_until(lambda: len(bridge.seen()) == 5, timeout=20)
    assert len(bridge.seen()) == 5, "nothing more: one event per call"


def chunked(data: bytes, size: int, signed: bool, trailer: str = "") -> bytes:
    """An aws-chunked body as botocore and the SDKs send it."""
    out = b""
    for start in range(0, len(data), size):
        piece = data[start:start + size]
        out += f"{len(piece):x}".encode() + (b";chunk-signature=" + b"0" * 64 if signed else b"") + b"\r\n"
        out += piece + b"\r\n"
    out += b"0" + (b";chunk-signature=" + b"0" * 64 if signed else b"") + b"\r\n"
    return out + (trailer.encode() + b"\r\n" if trailer else b"") + b"\r\n"


def raw_put(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("PUT", path, body=body, headers={"Content-Length": str(len(body)), **headers})
    response = conn.getresponse()
    return response.status, response.read()


def test_aws_chunked_bodies_are_decoded_and_checked(bridge: Bridge) -> None:
    import zlib

    data = os.urandom(200_000)
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    signed = {"x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "Content-Encoding": "aws-chunked",
              "x-amz-decoded-content-length": str(len(data))}
    assert raw_put(bridge.port, "/out/signed", chunked(data, 65536, True), signed)[0] == 200
    trailer = {"x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "Content-Encoding": "aws-chunked",
               "x-amz-decoded-content-length": str(len(data)), "x-amz-trailer": "x-amz-checksum-crc32"}
    status, _ = raw_put(bridge.port, "/out/trailer", chunked(data, 8192, False, f"x-amz-checksum-crc32:{crc}"),
                        trailer)
    assert status == 200
    assert (bridge.out / "signed").read_bytes() == data and (bridge.out / "trailer").read_bytes() == data
    status, body = raw_put(bridge.port, "/out/bad", chunked(data, 8192, False, "x-amz-checksum-crc32:AAAAAA=="),
                           trailer)
    assert status == 400 and b"<Code>BadDigest</Code>" in body and not (bridge.out / "bad").exists()
    status, body = raw_put(bridge.port, "/out/short", chunked(data, 8192, False)[:-500], trailer)
    assert status == 400 and not (bridge.out / "short").exists()
    assert sorted(os.listdir(bridge.out)) == ["signed", "trailer"]
    assert "ContentEncoding" not in bridge.s3.head_object(Bucket="out", Key="signed"), "aws-chunked is not kept"


# Writes the object that triggered it back through the S3 API: a runaway S3 -> Lambda -> S3 loop.
WRITE_BACK = """
    import boto3
    from urllib.parse import unquote_plus
    s3 = boto3.client("s3")
    def handler(event, context):
        record = event["Records"][0]["s3"]
        key = unquote_plus(record["object"]["key"])
        body = s3.get_object(Bucket=record["bucket"]["name"], Key=key)["Body"].read()
        s3.put_object(Bucket=record["bucket"]["name"], Key=key, Body=body + b"+")
"""


def test_the_loop_guard_stops_a_handler_writing_back_through_the_api(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "loop").mkdir()
    code = write_handler(tmp_path, "code-loop", WRITE_BACK)
    config = write_config(tmp_path / "config.yaml", {
        "state_dir": str(tmp_path / "state"), "api": {"listen": f"127.0.0.1:{port}"},
        "functions": {"loop": {"handler": "app.handler", "code": str(code), "reserved_concurrency": 1,
                               "timeout": 30}},
        "sources": [{"type": "directory", "name": "loop", "path": str(tmp_path / "loop"), "function": "loop",
                     "loop_threshold": 3}]})
    with Daemon(config) as daemon:
        daemon.wait_for("directory.ready", source="loop", timeout=60)
        s3_client(port).put_object(Bucket="loop", Key="k", Body=b"x")
        daemon.wait_for("directory.loop_detected", timeout=60)
        wait_until(lambda: daemon.find("delivery.succeeded") and (tmp_path / "loop" / "k").read_bytes() == b"x+++",
                   timeout=30)
        assert len(daemon.find("directory.loop_detected")) == 1
    assert (tmp_path / "loop" / "k").read_bytes() == b"x+++", "3 invocations allowed, the 4th event suppressed"


def test_virtual_hosted_and_presigned_requests(bridge: Bridge) -> None:
    import http.client
    import urllib.request

    bridge.s3.put_object(Bucket="out", Key="v/k.txt", Body=b"hello")
    conn = http.client.HTTPConnection("127.0.0.1", bridge.port, timeout=30)
    conn.request("GET", "/v/k.txt", headers={"Host": f"out.localhost:{bridge.port}"})
    response = conn.getresponse()
    assert (response.status, response.read()) == (200, b"hello")
    conn.request("GET", "/?list-type=2&prefix=v/", headers={"Host": f"out.s3.localhost:{bridge.port}"})
    response = conn.getresponse()
    assert response.status == 200 and b"<Key>v/k.txt</Key>" in response.read()
    for client, marker in ((bridge.s3, "&Signature="), (s3_client(bridge.port, signature_version="s3v4"),
                                                         "X-Amz-Signature=")):  # SigV2 and SigV4 query strings
        url = client.generate_presigned_url("get_object", Params={"Bucket": "out", "Key": "v/k.txt"}, ExpiresIn=60)
        assert marker in url
        with urllib.request.urlopen(url, timeout=30) as got:
            assert got.read() == b"hello"


def test_abandoned_multipart_uploads_are_removed_after_seven_days(tmp_path: Path) -> None:
    """A client that dies mid-upload never aborts it: its parts would stay on the disk of a daemon that runs
    for months. Uploads initiated over 7 days ago go at start (and hourly); a live one is untouched."""
    b = Bridge(tmp_path)
    uploads = tmp_path / "state" / "s3-uploads"
    stale, broken = uploads / ("a" * 48), uploads / ("b" * 48)
    for folder in (stale, broken):
        folder.mkdir(parents=True)
        (folder / "00001.0123456789abcdef0123456789abcdef").write_bytes(b"x" * 1024)
    (stale / "upload.json").write_text(json.dumps({"root": "00", "key": b"old/big.iso".hex(),
                                                   "initiated": time.time() - 8 * 86400}))
    week_ago = time.time() - 8 * 86400
    os.utime(broken, (week_ago, week_ago))  # no upload.json: its folder's age counts
    b.daemon.start()
    try:
        b.daemon.wait_for("directory.ready", source="uploads", timeout=60)
        [event] = b.daemon.wait_for("s3.upload_expired", upload_id="a" * 48)
        assert event["key"] == "old/big.iso" and event["age_s"] >= 8 * 86400 - 60
        b.daemon.wait_for("s3.upload_expired", upload_id="b" * 48)
        assert not stale.exists() and not broken.exists()
        upload = b.s3.create_multipart_upload(Bucket="out", Key="fresh.bin")["UploadId"]
        etag = b.s3.upload_part(Bucket="out", Key="fresh.bin", UploadId=upload, PartNumber=1, Body=b"y" * 10)["ETag"]
        b.s3.complete_multipart_upload(Bucket="out", Key="fresh.bin", UploadId=upload,
                                       MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
        assert (b.out / "fresh.bin").read_bytes() == b"y" * 10
    finally:
        b.daemon.stop()
        b.daemon.kill()


def test_upload_part_copy_builds_an_object_from_ranges_of_others(bridge: Bridge) -> None:
    """UploadPartCopy: what ``aws s3 cp s3://a/x s3://b/x`` does above 8 MB (and boto3's ``copy``)."""
    data = os.urandom(6 * 1024 * 1024 + 5)
    (bridge.photos / "src.bin").write_bytes(data)
    s3 = bridge.s3
    upload = s3.create_multipart_upload(Bucket="out", Key="joined.bin")["UploadId"]
    first = s3.upload_part_copy(Bucket="out", Key="joined.bin", UploadId=upload, PartNumber=1,
                                CopySource={"Bucket": "photos", "Key": "src.bin"},
                                CopySourceRange=f"bytes=0-{5 * 1024 * 1024 - 1}")["CopyPartResult"]
    second = s3.upload_part_copy(Bucket="out", Key="joined.bin", UploadId=upload, PartNumber=2,
                                 CopySource="photos/src.bin",
                                 CopySourceRange=f"bytes={5 * 1024 * 1024}-{len(data) - 1}")
    assert first["ETag"] == f'"{md5(data[:5 * 1024 * 1024])}"'
    assert second["CopyPartResult"]["ETag"] == f'"{md5(data[5 * 1024 * 1024:])}"'
    for bad_range, code in (("bytes=0-", "InvalidArgument"), ("bytes=5-4", "InvalidArgument"),
                            (f"bytes=0-{len(data)}", "InvalidArgument")):
        with pytest.raises(ClientError) as err:
            s3.upload_part_copy(Bucket="out", Key="joined.bin", UploadId=upload, PartNumber=3,
                                CopySource="photos/src.bin", CopySourceRange=bad_range)
        assert code_of(err) == (code, 400)
    for source, code in (("photos/missing.bin", ("NoSuchKey", 404)), ("nope/src.bin", ("NoSuchBucket", 404)),
                         ("photos/../out/joined.bin", ("InvalidArgument", 400))):
        with pytest.raises(ClientError) as err:
            s3.upload_part_copy(Bucket="out", Key="joined.bin", UploadId=upload, PartNumber=3, CopySource=source)
        assert code_of(err) == code
    s3.complete_multipart_upload(Bucket="out", Key="joined.bin", UploadId=upload, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": first["ETag"]}, {"PartNumber": 2, "ETag": second["CopyPartResult"]["ETag"]}]})
    assert (bridge.out / "joined.bin").read_bytes() == data
    with pytest.raises(ClientError) as err:  # the upload is gone once completed
        s3.upload_part_copy(Bucket="out", Key="joined.bin", UploadId=upload, PartNumber=1, CopySource="photos/src.bin")
    assert code_of(err) == ("NoSuchUpload", 404)


def test_list_multipart_uploads_pages_by_key_then_start(bridge: Bridge) -> None:
    s3 = bridge.s3
    ids = {key: s3.create_multipart_upload(Bucket="out", Key=key)["UploadId"] for key in ("x/1", "x/2", "y")}
    second = s3.create_multipart_upload(Bucket="out", Key="y")["UploadId"]
    s3.create_multipart_upload(Bucket="photos", Key="x/other-bucket")
    listed = s3.list_multipart_uploads(Bucket="out")
    assert [(u["Key"], u["UploadId"]) for u in listed["Uploads"]] == [
        ("x/1", ids["x/1"]), ("x/2", ids["x/2"]), ("y", ids["y"]), ("y", second)]
    assert listed["IsTruncated"] is False and listed["Uploads"][0]["StorageClass"] == "STANDARD"
    grouped = s3.list_multipart_uploads(Bucket="out", Delimiter="/")
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["x/"] and len(grouped["Uploads"]) == 2
    assert [u["Key"] for u in s3.list_multipart_uploads(Bucket="out", Prefix="x/")["Uploads"]] == ["x/1", "x/2"]
    seen, marker = [], {}
    while True:  # one at a time, as a paginator would
        page = s3.list_multipart_uploads(Bucket="out", MaxUploads=1, **marker)
        seen += [u["UploadId"] for u in page.get("Uploads", [])]
        if not page["IsTruncated"]:
            break
        marker = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}
    assert seen == [ids["x/1"], ids["x/2"], ids["y"], second]
    s3.abort_multipart_upload(Bucket="out", Key="y", UploadId=second)
    assert second not in [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="out")["Uploads"]]
    with pytest.raises(ClientError) as err:
        s3.list_multipart_uploads(Bucket="out", MaxUploads=-1)
    assert code_of(err)[1] == 400
