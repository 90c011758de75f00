"""sam-import without a daemon: template loading, intrinsics, mapping, bad input (each error names file and line)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.config.model import load_config
from bridge.errors import SamTemplateError
from bridge.sam import Mapping, import_template
from bridge.sam.intrinsics import Resolver, Unresolved
from bridge.sam.template import parse_template

TEMPLATES = Path(__file__).resolve().parents[1] / "sam" / "templates"
HEAD = "Transform: AWS::Serverless-2016-10-31\n"


def write(tmp_path: Path, body: str, code: bool = True) -> Path:
    if code:
        (tmp_path / "src").mkdir(exist_ok=True)
        (tmp_path / "src" / "app.py").write_text("def handler(event, context):\n    return event\n")
    path = tmp_path / "template.yaml"
    path.write_text(HEAD + textwrap.dedent(body))
    return path


FUNCTION = """
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: src/, Handler: app.handler, Runtime: python3.12}
"""


def imported(tmp_path: Path, body: str, **kwargs: Any) -> tuple[dict[str, Any], list[str]]:
    result = import_template(write(tmp_path, body), output=tmp_path / "config.yaml", **kwargs)
    (tmp_path / "config.yaml").write_text(result.text)
    load_config(tmp_path / "config.yaml")  # what `lambda-bridge check` runs: the output must pass it
    return yaml.safe_load(result.text), [str(u) for u in result.unmapped]


def resolver(body: str, parameters: dict[str, Any] | None = None) -> Resolver:
    template = parse_template(HEAD + textwrap.dedent(body), Path("t.yaml"))
    return Resolver(template, parameters or {}, region="eu-west-1", account_id="111122223333", stack_name="app")


# --- intrinsics ------------------------------------------------------------------------------------------


INTRINSICS = """
Parameters: {Stage: {Type: String}}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  Long: {"Fn::Not": [{"Condition": IsProd}]}
Mappings: {Sizes: {prod: {Memory: 1024}, dev: {Memory: 128}}}
Resources:
  Q: {Type: AWS::SQS::Queue, Properties: {QueueName: !Sub '${Stage}-jobs'}}
  B: {Type: AWS::S3::Bucket}
"""


@pytest.mark.parametrize(("expression", "expected"), [
    ({"Ref": "Stage"}, "dev"),
    ({"Fn::Sub": "${AWS::Region}-${Stage}-${!Literal}"}, "eu-west-1-dev-${Literal}"),
    ({"Fn::Sub": ["${A}/${Q.QueueName}", {"A": {"Ref": "AWS::AccountId"}}]}, "111122223333/dev-jobs"),
    ({"Fn::GetAtt": ["Q", "Arn"]}, "arn:aws:sqs:eu-west-1:111122223333:dev-jobs"),
    ({"Fn::GetAtt": "Q.QueueUrl"}, "https://sqs.eu-west-1.amazonaws.com/111122223333/dev-jobs"),
    ({"Ref": "Q"}, "https://sqs.eu-west-1.amazonaws.com/111122223333/dev-jobs"),
    ({"Ref": "B"}, "B"),
    ({"Fn::Join": ["-", ["a", {"Ref": "Stage"}, 3]]}, "a-dev-3"),
    ({"Fn::If": ["IsProd", "big", "small"]}, "small"),
    ({"Fn::If": ["Long", "yes", "no"]}, "yes"),
    ({"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]}, "b"),
    ({"Fn::FindInMap": ["Sizes", {"Ref": "Stage"}, "Memory"]}, 128),
    ({"k": {"Fn::If": ["IsProd", 1, {"Ref": "AWS::NoValue"}]}, "j": 2}, {"j": 2}),
])
def test_long_forms(expression: Any, expected: Any) -> None:
    assert resolver(INTRINSICS, {"Stage": "dev"}).resolve(expression, ()) == expected


def test_short_forms_are_the_long_forms() -> None:
    template = parse_template(HEAD + textwrap.dedent("""
        Resources:
          R:
            Type: X
            Properties:
              a: !Ref Stage
              b: !GetAtt Q.Arn
              c: !Sub ['${x}', {x: !Ref Stage}]
              d: !If [IsProd, !Join ['', [a, b]], !Select [0, !Split [',', 'x,y']]]
              e: !ImportValue other-stack-Output
        """), Path("t.yaml"))
    props = template.resources["R"]["Properties"]
    assert props["b"] == {"Fn::GetAtt": ["Q", "Arn"]}
    assert props["c"] == {"Fn::Sub": ["${x}", {"x": {"Ref": "Stage"}}]}
    assert props["d"]["Fn::If"][1] == {"Fn::Join": ["", ["a", "b"]]}
    assert template.line(("Resources", "R", "Properties", "e")) == 11


def test_import_value_is_unresolved_and_poisons_a_sub() -> None:
    r = resolver(INTRINSICS, {"Stage": "dev"})
    value = r.resolve({"Fn::Sub": ["x-${V}", {"V": {"Fn::ImportValue": "shared-Out"}}]}, ())
    assert isinstance(value, Unresolved) and "shared-Out" in value.reason


# --- mapping -----------------------------------------------------------------------------------------------


def test_globals_parameters_conditions(tmp_path: Path) -> None:
    app = TEMPLATES / "globals-params"
    result = import_template(app / "template.yaml", output=tmp_path / "c.yaml", overrides={"Stage": "dev"})
    config = yaml.safe_load(result.text)
    job = config["functions"]["JobFunction"]
    assert "ProdReportFunction" not in config["functions"]  # Condition: IsProd, false for dev
    assert job["timeout"] == 10 and job["memory_size"] == 256 and job["reserved_concurrency"] == 2
    assert job["environment"] == {"STAGE": "dev", "LOG_LEVEL": "DEBUG", "GREETING": "hello from us-east-1",
                                  "JOBS_QUEUE_URL": "http://127.0.0.1:9001/123456789012/globals-params-dev-jobs",
                                  "DEBUG_ONLY": "yes"}
    assert job["async"] == {"maximum_retry_attempts": 1, "maximum_event_age": 600,
                            "on_success": "function:AuditFunction",
                            "on_failure": "sqs:http://127.0.0.1:9001/123456789012/failed-dev"}
    assert config["sources"][1]["input"] == '{"stage": "dev", "greeting": "hello"}'
    where = [u.where for u in result.unmapped]
    assert any(w.endswith(":52 Resources.JobFunction.Properties.Environment.Variables.SHARED_TABLE") for w in where)
    assert any(w.endswith(":78 Resources.JobFunction.Properties.Events.Clicks") for w in where)


def test_every_shipped_template_passes_check(tmp_path: Path) -> None:
    maps = Mapping(buckets={"SourceBucket": tmp_path / "uploads"}, broker="mqtt://127.0.0.1:1883")
    (tmp_path / "uploads").mkdir()
    for template in sorted(TEMPLATES.glob("*/template.*")):
        result = import_template(template, output=tmp_path / "c.yaml",
                                 maps=maps if template.parent.name == "s3-thumbnail" else Mapping(broker=maps.broker))
        (tmp_path / "c.yaml").write_text(result.text)
        config = load_config(tmp_path / "c.yaml")
        assert config.functions, template


def test_sqs_queue_properties_and_redrive(tmp_path: Path) -> None:
    config, unmapped = imported(tmp_path, """
        Resources:
          DLQ: {Type: AWS::SQS::Queue, Properties: {FifoQueue: true}}
          Q:
            Type: AWS::SQS::Queue
            Properties:
              FifoQueue: true
              VisibilityTimeout: 45
              MessageRetentionPeriod: 3600
              RedrivePolicy: {deadLetterTargetArn: !GetAtt DLQ.Arn, maxReceiveCount: 4}
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src/
              Handler: app.handler
              Runtime: python3.12
              Events:
                Jobs: {Type: SQS, Properties: {Queue: !GetAtt Q.Arn, BatchSize: 7}}
                Remote: {Type: SQS, Properties: {Queue: 'arn:aws:sqs:us-east-1:123456789012:elsewhere'}}
        """)
    assert config["queues"]["Q.fifo"] == {"visibility_timeout": 45, "message_retention": 3600, "fifo": True,
                                          "redrive_policy": {"dead_letter_queue": "DLQ.fifo", "max_receive_count": 4}}
    assert config["queues"]["DLQ.fifo"] == {"fifo": True}
    assert config["sources"][0]["queue"] == "Q.fifo" and config["sources"][0]["batch_size"] == 7
    assert len(unmapped) == 1 and "--map queue:arn:aws:sqs:us-east-1:123456789012:elsewhere=QUEUE_URL" in unmapped[0]


def test_mapped_queue_url_and_other_runtimes(tmp_path: Path) -> None:
    config, unmapped = imported(tmp_path, """
        Resources:
          Q: {Type: AWS::SQS::Queue}
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src/
              Handler: app.handler
              Runtime: python3.12
              Events:
                Jobs: {Type: SQS, Properties: {Queue: !GetAtt Q.Arn}}
          Node:
            Type: AWS::Serverless::Function
            Properties: {CodeUri: src/, Handler: index.handler, Runtime: nodejs20.x}
        """, maps=Mapping(queues={"Q": "http://127.0.0.1:4566/000000000000/q"}))
    assert config["sources"][0]["queue"] == "http://127.0.0.1:4566/000000000000/q"
    assert "queues" not in config and list(config["functions"]) == ["Fn"]
    assert "Resources.Node.Properties.Runtime: runtime 'nodejs20.x' is not supported" in unmapped[0]


def test_api_events_become_routes_of_an_http_source(tmp_path: Path) -> None:
    app = TEMPLATES / "http-api-authorizer"
    result = import_template(app / "template.yaml", output=tmp_path / "c.yaml")
    assert result.unmapped == []
    [source] = yaml.safe_load(result.text)["sources"]
    assert source == {
        "name": "ItemsApi-http", "type": "http", "listen": "127.0.0.1:3000", "format": "http", "stage": "v1",
        "cors": {"allow_origins": ["https://example.com"], "allow_methods": ["GET", "POST"],
                 "allow_headers": ["authorization", "content-type"], "max_age": 600},
        "authorizer": {"function": "AuthorizerFunction", "type": "request", "identity_source": ["authorization"],
                       "ttl": 300},
        "routes": [{"route": "GET /items/{id}", "function": "ItemsFunction"},
                   {"route": "PUT /items/{id}", "function": "ItemsFunction"}],
    }


def test_the_readme_says_what_becomes_of_api_events() -> None:
    """The README's SAM section describes today's import of Api/HttpApi events, not a build without them."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Already have a SAM app?", 1)[1].split("\n## ", 1)[0]
    assert "not yet supported" not in section
    assert "`Api`/`HttpApi` events" in section and "`http`" in section and "format: url" in section


def test_rest_api_implicit_and_any() -> None:
    from bridge.sam.http import api_route, api_source_config

    assert api_route("Api", {"Path": "/{proxy+}", "Method": "any"}) == "ANY /{proxy+}"
    assert api_route("HttpApi", {}) == "$default"
    value = api_source_config("Api", {"Cors": "'*'", "Auth": {"DefaultAuthorizer": "A", "Authorizers": {
        "A": {"FunctionArn": "arn:aws:lambda:us-east-1:1:function:auth", "Identity": {"Header": "X-Token"}}}}},
        "api", "127.0.0.1:3000")
    assert value["stage"] == "prod" and value["cors"] == {"allow_origins": ["*"]}
    assert value["authorizer"] == {"function": "auth", "type": "token", "identity_source": ["x-token"]}


# --- bad input: a clear error with the file and line, exit 2 ---------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.cli", "sam-import", *args], capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.mark.parametrize(("body", "args", "expected"), [
    ("Resources:\n  Fn: {Type: X\n  Other: 1\n", [], r"template.yaml:4: not valid YAML"),
    (FUNCTION.replace("CodeUri: src/, ", ""), [], r"template.yaml:6 Resources.Fn.Properties: function Fn has no "
                                                   r"CodeUri"),
    (FUNCTION + """
  A: {Type: AWS::SQS::Queue, Properties: {QueueName: !Sub '${B.QueueName}-a'}}
  B: {Type: AWS::SQS::Queue, Properties: {QueueName: !Sub '${A.QueueName}-b'}}
  Use:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: src/, Handler: app.handler, Runtime: python3.12,
                 Environment: {Variables: {Q: !Ref A}}}
""", [], r"template.yaml:\d+ Resources.A: Circular dependency between resources: \[A, B\]"),
    ("Parameters: {Stage: {Type: String, Default: dev}}\n" + FUNCTION, ["--parameter-overrides", "Stag=prod"],
     r"template.yaml:2 Parameters: --parameter-overrides names 'Stag', which the template does not declare; "
     r"declared: Stage"),
    (FUNCTION, ["--map", "bucket:Uploads=./up"], r"template.yaml:3 Resources: --map bucket:Uploads: neither an "
                                                 r"AWS::S3::Bucket of the template \(none\) nor a bucket name"),
    (FUNCTION + "  Bad: {Type: !Magic x}\n", [], r"template.yaml:7: unknown tag !Magic"),
    (FUNCTION.replace("python3.12", "nodejs20.x"), [],  # the only function is skipped: named, runtime, what to do
     r"template.yaml:3 Resources: no AWS::Serverless::Function this bridge can run; nothing to import. Skipped:\n"
     r"  \S*template.yaml:6 Resources.Fn.Properties.Runtime: runtime 'nodejs20.x' is not supported locally .*; "
     r"run it elsewhere and add it by ARN"),
    ("Parameters: {Stage: {Type: String, Default: dev}}\nConditions: {Prod: !Equals [!Ref Stage, prod]}\n"
     + FUNCTION.replace("    Properties:", "    Condition: Prod\n    Properties:"), [],
     r"nothing to import. Skipped:\n  \S*template.yaml:\d+ Resources.Fn.Condition: function Fn is not created \(its "
     r"Condition is false\); give --parameter-overrides that make it true"),
])
def test_bad_input_names_file_and_line(tmp_path: Path, body: str, args: list[str], expected: str) -> None:
    done = run_cli(str(write(tmp_path, body)), "-o", str(tmp_path / "c.yaml"), *args)
    assert done.returncode == 2, done.stderr
    assert re.search(expected, done.stderr), done.stderr
    assert not (tmp_path / "c.yaml").exists()


def test_not_a_sam_template(tmp_path: Path) -> None:
    path = tmp_path / "cfn.yaml"
    path.write_text("AWSTemplateFormatVersion: '2010-09-09'\nResources:\n  B: {Type: AWS::S3::Bucket}\n")
    done = run_cli(str(path))
    assert done.returncode == 2
    assert f"{path}:1: not a SAM template: it needs 'Transform: AWS::Serverless-2016-10-31'" in done.stderr


def test_strict_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    done = run_cli(str(TEMPLATES / "globals-params" / "template.yaml"), "-o", str(tmp_path / "c.yaml"), "--strict")
    assert done.returncode == 2
    assert "Kinesis events are not supported" in done.stderr and not (tmp_path / "c.yaml").exists()
    done = run_cli(str(TEMPLATES / "globals-params" / "template.yaml"), "-o", str(tmp_path / "c.yaml"))
    assert done.returncode == 0 and (tmp_path / "c.yaml").exists()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=300), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["Ref", "Fn::Sub", "Fn::If", "Fn::Join", "Fn::GetAtt", "Fn::ImportValue", "Queue", "Type",
                         "Events", "CodeUri", "Handler", "Runtime", "Fn", "Q"]), inner, max_size=4),
    max_leaves=20).map(lambda data: HEAD + yaml.safe_dump({"Resources": {
        "Fn": {"Type": "AWS::Serverless::Function", "Properties": {
            "CodeUri": ".", "Handler": "app.handler", "Runtime": "python3.12", "Environment": {"Variables": data},
            "Events": {"E": {"Type": "SQS", "Properties": data}}}},
        "Q": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": data}}}}))))
def test_hostile_templates_fail_only_with_a_template_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text)
    try:
        result = import_template(path, output=tmp_path / "c.yaml")
    except SamTemplateError as err:
        assert str(err).startswith(str(path))
    else:
        assert isinstance(yaml.safe_load(result.text), dict)  # whatever came through renders as YAML


def test_function_url_layers_and_foreign_resources(tmp_path: Path) -> None:
    body = """
        Resources:
          Plain: {Type: AWS::Lambda::Function, Properties: {Handler: x.y}}
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src/
              Handler: app.handler
              Runtime: python3.12
              Layers: [arn:aws:lambda:us-east-1:123456789012:layer:deps:3]
              FunctionUrlConfig: {AuthType: NONE, Cors: {AllowOrigins: ['*'], MaxAge: 60}}
              Events:
                Open: {Type: Api, Properties: {Path: /open, Method: get, Auth: {Authorizer: NONE}}}
        """
    result = import_template(write(tmp_path, body), output=tmp_path / "c.yaml")
    assert [str(u).split(": ", 1)[1].split(" (")[0].split(";")[0] for u in result.unmapped] == [
        "AWS::Lambda::Function resources are not imported",
        "layer arn:aws:lambda:us-east-1:123456789012:layer:deps:3 is given by ARN: its content is in AWS, not here",
        "a per-route authorizer"]
    sources = yaml.safe_load(result.text)["sources"]
    assert sources[0] == {"name": "Fn-url", "type": "http", "listen": "127.0.0.1:3000", "format": "url",
                          "cors": {"allow_origins": ["*"], "max_age": 60},
                          "routes": [{"route": "$default", "function": "Fn"}]}
    assert sources[1]["name"] == "ServerlessRestApi-http" and sources[1]["listen"] == "127.0.0.1:3001"
    assert sources[1]["routes"] == [{"route": "GET /open", "function": "Fn"}]
    assert any("a per-route authorizer (NONE)" in str(u) for u in result.unmapped)


def test_circular_conditions(tmp_path: Path) -> None:
    body = "Conditions:\n  A: !Condition B\n  B: !Not [!Condition A]\n" + FUNCTION.replace(
        "Type: AWS::Serverless::Function", "Type: AWS::Serverless::Function\n    Condition: A")
    with pytest.raises(SamTemplateError, match=r"template.yaml:\d+ Conditions.[AB]: circular reference: "
                                               r"Condition ([AB]) -> Condition [AB] -> Condition \1"):
        import_template(write(tmp_path, body))


def test_template_values_cannot_inject_config_through_comments(tmp_path: Path) -> None:
    body = FUNCTION.replace("python3.12", '"nodejs\\nregion: eu-west-3\\nstate_dir: /etc"') + """
  Fn2:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: src/, Handler: app.handler, Runtime: python3.12}
"""
    config, unmapped = imported(tmp_path, body)
    assert config["region"] == "us-east-1" and config["state_dir"] == "var/state"
    assert "runtime 'nodejs\\nregion: eu-west-3\\nstate_dir: /etc'" in unmapped[0]
    with pytest.raises(SamTemplateError, match=r"template.yaml:3 Resources.Bad\nId: logical id"):
        import_template(write(tmp_path, 'Resources:\n  "Bad\\nId": {Type: AWS::SQS::Queue}\n'))


INTRINSIC_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 100_000) | st.sampled_from(["", "x", "rate(1 minute)", "Q", "P"])
    | st.just({"Ref": "P"}) | st.just({"Fn::ImportValue": "other"}) | st.just({"Fn::GetAtt": ["Q", "Arn"]})
    | st.just({"Ref": "AWS::NoValue"}),
    lambda inner: st.lists(inner, max_size=3) | st.builds(lambda v: {"Fn::Sub": ["${v}", {"v": v}]}, inner)
    | st.builds(lambda a, b: {"Fn::If": ["C", a, b]}, inner, inner) | st.dictionaries(st.text(max_size=5), inner,
                                                                                       max_size=2),
    max_leaves=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.fixed_dictionaries({k: INTRINSIC_VALUES for k in (
    "queue_name", "visibility", "redrive", "batch", "sql", "schedule", "timezone", "input", "timeout", "env",
    "bucket", "events", "destination")}))
def test_hostile_values_in_every_mapped_slot(tmp_path: Path, v: dict[str, Any]) -> None:
    template = {
        "Transform": "AWS::Serverless-2016-10-31", "Parameters": {"P": {"Type": "String", "Default": "p"}},
        "Conditions": {"C": {"Fn::Equals": [{"Ref": "P"}, "p"]}},
        "Resources": {
            "Q": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": v["queue_name"],
                                                            "VisibilityTimeout": v["visibility"],
                                                            "RedrivePolicy": v["redrive"]}},
            "B": {"Type": "AWS::S3::Bucket"},
            "Fn": {"Type": "AWS::Serverless::Function", "Properties": {
                "CodeUri": ".", "Handler": "app.handler", "Runtime": "python3.12", "Timeout": v["timeout"],
                "Environment": {"Variables": {"K": v["env"]}},
                "EventInvokeConfig": {"DestinationConfig": {"OnFailure": {"Type": "SQS",
                                                                          "Destination": v["destination"]}}},
                "Events": {
                    "S": {"Type": "SQS", "Properties": {"Queue": {"Fn::GetAtt": ["Q", "Arn"]},
                                                        "BatchSize": v["batch"]}},
                    "I": {"Type": "IoTRule", "Properties": {"Sql": v["sql"]}},
                    "T": {"Type": "ScheduleV2", "Properties": {"ScheduleExpression": v["schedule"],
                                                               "ScheduleExpressionTimezone": v["timezone"],
                                                               "Input": v["input"]}},
                    "U": {"Type": "S3", "Properties": {"Bucket": v["bucket"], "Events": v["events"]}}}}}}}
    path = tmp_path / "t.yaml"
    path.write_text(json.dumps(template))
    try:
        result = import_template(path, output=tmp_path / "c.yaml", maps=Mapping(buckets={"B": tmp_path},
                                                                                broker="mqtt://127.0.0.1"))
    except SamTemplateError as err:
        assert str(err).startswith(str(path))
    else:
        assert isinstance(yaml.safe_load(result.text), dict)


def test_parameter_overrides_forms() -> None:
    from bridge.errors import UsageError
    from bridge.sam.importer import parse_overrides

    assert parse_overrides(["Stage=dev Name='a b'", "ParameterKey=X,ParameterValue=1"]) == {
        "Stage": "dev", "Name": "a b", "X": "1"}
    for bad in (["Stage"], ["=x"], ["Name='open"]):
        with pytest.raises(UsageError, match="--parameter-overrides"):
            parse_overrides(bad)
