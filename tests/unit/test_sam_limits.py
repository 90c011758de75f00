"""sam-import against templates built to cost without bound, and what CloudFormation itself refuses: each is
refused with one clear error (exit 2), in bounded time and memory, or imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.sam_hostile import FUNCTION, HEAD, aliases_to_one_map, billion_laughs  # the bench's hostile templates
from bridge.errors import SamTemplateError
from bridge.sam import Mapping, import_template
from bridge.sam.limits import MAX_ALIAS_NODES, MAX_DEPTH, MAX_EVALUATION_STEPS, MAX_REFERENCE_CHAIN

SAM_FUNCTION = {"Type": "AWS::Serverless::Function",
                "Properties": {"CodeUri": "src/", "Handler": "app.handler", "Runtime": "python3.12"}}


def write(tmp_path: Path, text: str, name: str = "template.yaml") -> Path:
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "src" / "app.py").write_text("def handler(event, context):\n    return event\n")
    path = tmp_path / name
    path.write_text(text)
    return path


def with_env(value: str) -> str:
    """The template's function, with one environment variable whose value is ``value`` (YAML flow text)."""
    environment = f"Environment: {{Variables: {{V: {value}}}}}"
    return FUNCTION.replace("Runtime: python3.12}", f"Runtime: python3.12, {environment}}}")


def deep_join(depth: int) -> str:
    join = '{"Fn::Join": ["", [' * depth + '"x"' + "]]}" * depth
    template = {"Transform": "AWS::Serverless-2016-10-31", "Resources": {"Fn": {**SAM_FUNCTION, "Properties": {
        **SAM_FUNCTION["Properties"], "Environment": {"Variables": {"V": "@"}}}}}}
    return json.dumps(template).replace('"@"', join)


HOSTILE = {
    "billion laughs": (billion_laughs, rf"aliases \(\*name\) expand to more than {MAX_ALIAS_NODES:,} values"),
    "20,000 aliases of a 1,000-key map": (aliases_to_one_map, "aliases .* expand to more than"),
    "10,000-deep flow": (lambda: HEAD + f"Metadata: {'[' * 10_000}{']' * 10_000}\nResources:\n" + FUNCTION,
                         f"values are nested more than {MAX_DEPTH} deep"),
    "10,000-deep block": (lambda: HEAD + "Metadata:\n" + "".join(f"{' ' * (i + 2)}k:\n" for i in range(1000))
                          + "Resources:\n" + FUNCTION, f"nested more than {MAX_DEPTH} deep"),
    "10,000-deep JSON": (lambda: '{"Transform": "AWS::Serverless-2016-10-31", "Metadata": ' + '{"k": ' * 10_000
                         + "1" + "}" * 10_000 + ', "Resources": ' + json.dumps({"Fn": SAM_FUNCTION}) + "}",
                         f"nested more than {MAX_DEPTH} deep"),
    "10,000 nested Fn::Join": (lambda: deep_join(10_000), f"nested more than {MAX_DEPTH} deep"),
    "an alias deepening a deep value": (lambda: HEAD + "Metadata:\n  a: &a " + "[" * 40 + "]" * 40 + "\n  b: "
                                        + "[" * 40 + "*a" + "]" * 40 + "\nResources:\n" + FUNCTION,
                                        f"nested more than {MAX_DEPTH} deep"),
    "2 MB": (lambda: HEAD + "Metadata:\n" + "".join(f"  k{i}: {'x' * 80}\n" for i in range(25_000)) + "Resources:\n"
             + FUNCTION, r"larger than 1,048,576 bytes, CloudFormation's limit"),
    "201 parameters": (lambda: HEAD + "Parameters:\n" + "".join(f"  P{i}: {{Type: String, Default: d}}\n"
                                                                for i in range(201)) + "Resources:\n" + FUNCTION,
                       "201 parameters; CloudFormation allows at most 200"),
    "501 resources": (lambda: HEAD + "Resources:\n" + "".join(f"  Q{i}: {{Type: AWS::SQS::Queue}}\n"
                                                              for i in range(500)) + FUNCTION,
                      "501 resources; CloudFormation allows at most 500"),
    "a chain of 400 references": (lambda: HEAD + "Resources:\n" + "".join(
        f"  Q{i}: {{Type: AWS::SQS::Queue, Properties: {{QueueName: !Sub '${{Q{i + 1}.QueueName}}x'}}}}\n"
        for i in range(400)) + "  Q400: {Type: AWS::SQS::Queue}\n" + with_env("!Ref Q0"),
        f"a chain of more than {MAX_REFERENCE_CHAIN} references"),
    "a chain of 400 conditions": (lambda: HEAD + "Conditions:\n" + "".join(
        f"  C{i}: !Condition C{i + 1}\n" for i in range(400)) + "  C400: !Equals [a, a]\nResources:\n"
        + FUNCTION.replace("    Properties:", "    Condition: C0\n    Properties:"),
        f"a chain of more than {MAX_REFERENCE_CHAIN} references"),
    "a 4 KB parameter substituted 100,000 times": (
        lambda: HEAD + f"Parameters:\n  P: {{Type: String, Default: {'x' * 4096}}}\nResources:\n"
        + with_env(f"!Sub '{'${P}' * 100_000}'"), "Fn::Sub builds a string longer than 1,048,576 characters"),
    "a 4 KB parameter joined 100,000 times": (
        lambda: HEAD + f"Parameters:\n  P: {{Type: String, Default: {'x' * 4096}}}\nResources:\n"
        + with_env(f"!Join ['', [{', '.join(['!Ref P'] * 100_000)}]]"), "Fn::Join builds a string longer than"),
    "a list substituted into a string": (
        lambda: HEAD + f"Parameters:\n  P: {{Type: String, Default: {'x' * 4096}}}\nResources:\n"
        + with_env(f"!Sub ['${{L}}', {{L: [{', '.join(['!Ref P'] * 1000)}]}}]"), "builds a string longer than"),
    "Globals applied to 400 functions": (
        lambda: HEAD + "Globals:\n  Function:\n    Environment: {Variables: {"
        + ", ".join(f"V{i}: !Sub '${{AWS::Region}}-{i}'" for i in range(2000)) + "}}\nResources:\n"
        + "".join(FUNCTION.replace("  Fn:", f"  Fn{i}:") for i in range(400)),
        f"evaluating the template takes more than {MAX_EVALUATION_STEPS:,} steps"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_template_is_refused_with_one_clear_error(tmp_path: Path, case: str) -> None:
    build, expected = HOSTILE[case]
    path = write(tmp_path, build())
    with pytest.raises(SamTemplateError, match=expected) as err:
        import_template(path, output=tmp_path / "c.yaml")
    assert str(err.value).startswith(str(path))


@pytest.mark.parametrize("case", ["billion laughs", "10,000-deep JSON", "a chain of 400 references"])
def test_the_command_answers_exit_2_and_one_line(tmp_path: Path, case: str) -> None:
    path = write(tmp_path, HOSTILE[case][0]())
    done = subprocess.run([sys.executable, "-m", "bridge.cli", "sam-import", str(path), "-o", str(tmp_path / "c")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1 and not (tmp_path / "c").exists()


def test_an_endless_file_is_read_only_up_to_the_limit(tmp_path: Path) -> None:
    with pytest.raises(SamTemplateError, match="larger than 1,048,576 bytes"):
        import_template("/dev/zero")


def test_the_deepest_accepted_nesting_evaluates_without_recursion_error(tmp_path: Path) -> None:
    """Values nested to the limit, evaluated at the end of the longest chain of references the limits allow."""
    join = "x"
    for _ in range(MAX_DEPTH // 3 - 2):  # each Fn::Join takes three levels: its mapping, its list, its values
        join = {"Fn::Join": ["", [join]]}
    queues = {f"Q{i}": {"Type": "AWS::SQS::Queue", "Properties": {
        "QueueName": {"Fn::Sub": f"${{Q{i + 1}.QueueName}}"}}} for i in range(MAX_REFERENCE_CHAIN - 2)}
    queues[f"Q{MAX_REFERENCE_CHAIN - 2}"] = {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": join}}
    function = {**SAM_FUNCTION, "Properties": {**SAM_FUNCTION["Properties"],
                                               "Environment": {"Variables": {"V": {"Ref": "Q0"}}}}}
    path = write(tmp_path, json.dumps({"Transform": "AWS::Serverless-2016-10-31",
                                       "Resources": {**queues, "Fn": function}}))
    try:
        result = import_template(path, output=tmp_path / "c.yaml")
    except SamTemplateError as err:  # refused is a defined answer too; a RecursionError is not
        assert "nested more than" in str(err)
    else:
        assert "V: http://127.0.0.1:9001/123456789012/x\n" in result.text  # Q0's URL: the name at the chain's end


def test_anchors_and_aliases_within_the_limits_import(tmp_path: Path) -> None:
    text = HEAD + "Resources:\n" + "".join(
        f"  Fn{i}:\n    Type: AWS::Serverless::Function\n    Properties:\n"
        f"      {'Environment: &env {Variables: {STAGE: dev, LEVEL: info}}' if i == 0 else 'Environment: *env'}\n"
        "      CodeUri: src/\n      Handler: app.handler\n      Runtime: python3.12\n" for i in range(50))
    result = import_template(write(tmp_path, text), output=tmp_path / "c.yaml")
    assert len(result.functions) == 50 and result.text.count("STAGE: dev") == 50


# --- what CloudFormation refuses ---------------------------------------------------------------------


@pytest.mark.parametrize("code_uri", ["../../../../etc", "/", "src/../..", "/etc"])
def test_code_uri_stays_in_the_template_folder(tmp_path: Path, code_uri: str) -> None:
    (tmp_path / "app").mkdir()
    path = write(tmp_path / "app", HEAD + "Resources:\n" + FUNCTION.replace("src/", f"'{code_uri}'"))
    with pytest.raises(SamTemplateError, match=r"CodeUri .* is outside the template's folder .*; a template may only "
                                               r"point into its own folder\. .* --map code:Fn="):
        import_template(path, output=tmp_path / "c.yaml")


def test_a_link_out_of_the_template_folder_is_outside_too(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "elsewhere").mkdir()
    path = write(tmp_path / "app", HEAD + "Resources:\n" + FUNCTION.replace("src/", "linked"))
    os.symlink(tmp_path / "elsewhere", tmp_path / "app" / "linked")
    with pytest.raises(SamTemplateError, match="is outside the template's folder"):
        import_template(path, output=tmp_path / "c.yaml")


def test_code_outside_is_what_the_user_maps(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "shared").mkdir()
    path = write(tmp_path / "app", HEAD + "Resources:\n" + FUNCTION.replace("src/", "../shared"))
    result = import_template(path, output=tmp_path / "c.yaml", maps=Mapping(code={"Fn": tmp_path / "shared"}))
    assert "code: shared" in result.text
    with pytest.raises(SamTemplateError, match="--map code:Nope: the template has no AWS::Serverless::Function "
                                               "'Nope'; it has: Fn"):
        import_template(path, maps=Mapping(code={"Nope": tmp_path / "shared"}))


def test_map_code_on_the_command_line(tmp_path: Path) -> None:
    from bridge.sam import parse_maps

    assert parse_maps(["code:Fn=~/x"]).code == {"Fn": (Path.home() / "x").resolve()}


@pytest.mark.parametrize(("expression", "expected"), [
    ("!Select [-1, [a, b]]", r"Fn::Select index -1 of a list of 2: the index is a whole number from 0"),
    ("!Select ['-1', [a, b]]", r"Fn::Select index '-1' of a list of 2"),
    ("!Select [2, [a, b]]", r"Fn::Select index 2 of a list of 2"),
    ("!Select [0, abc]", r"Fn::Select index 0 of not a list \(str\)"),
    ("!Join ['', abc]", r"Fn::Join takes \[delimiter, \[values\]\] \(a string and a list; got str and str\)"),
    ("!Split ['', abc]", r"Fn::Split takes \[delimiter, string\]"),
    ("!FindInMap [M, a]", r"Fn::FindInMap takes \[MapName, TopLevelKey, SecondLevelKey\]"),
])
def test_intrinsics_refuse_what_cloudformation_refuses(tmp_path: Path, expression: str, expected: str) -> None:
    path = write(tmp_path, HEAD + "Mappings: {M: {a: {b: c}}}\nResources:\n" + with_env(expression))
    with pytest.raises(SamTemplateError, match=r"Resources.Fn.Properties.Environment.Variables.V: " + expected):
        import_template(path, output=tmp_path / "c.yaml")


TWO_FUNCTIONS = """Resources:
  A:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: src/, Handler: app.handler, Runtime: python3.12,
                 Environment: {Variables: {OTHER: !GetAtt B.Arn}}}
  B:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: src/, Handler: app.handler, Runtime: python3.12,
                 Environment: {Variables: {OTHER: !GetAtt A.Arn}}}
"""


@pytest.mark.parametrize(("body", "cycle"), [
    (TWO_FUNCTIONS, "A, B"),
    ("Resources:\n" + FUNCTION + "    DependsOn: Q\n  Q: {Type: AWS::SQS::Queue, DependsOn: [Fn]}\n", "Fn, Q"),
    ("Resources:\n" + FUNCTION + "  Q: {Type: AWS::SQS::Queue, Properties: {QueueName: !Sub '${R}-q'}}\n"
     "  R: {Type: AWS::SQS::Queue, Properties: {QueueName: !Sub ['${Name}', {Name: !GetAtt Q.QueueName}]}}\n",
     "Q, R"),
    ("Resources:\n" + with_env("!GetAtt Fn.Arn"), "Fn"),
    ("Globals: {Function: {Environment: {Variables: {X: !Ref A}}}}\nResources:\n" + FUNCTION.replace("Fn:", "A:"),
     "A"),
])
def test_circular_dependencies_are_refused_as_cloudformation_does(tmp_path: Path, body: str, cycle: str) -> None:
    with pytest.raises(SamTemplateError, match=rf"Circular dependency between resources: \[{cycle}\]"):
        import_template(write(tmp_path, HEAD + body), output=tmp_path / "c.yaml")


def test_references_that_close_no_circle_import(tmp_path: Path) -> None:
    """A literal ${!Name}, a Sub's own variable and a function's Events are not references to resources."""
    body = textwrap.dedent("""
        Resources:
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src/
              Handler: app.handler
              Runtime: python3.12
              Environment: {Variables: {V: !Sub ['${!Fn}-${Fn}-${Q.QueueName}', {Fn: x}]}}
              Events: {S: {Type: SQS, Properties: {Queue: !GetAtt Q.Arn}}}
          Q:
            Type: AWS::SQS::Queue
            Properties: {RedrivePolicy: {deadLetterTargetArn: !GetAtt D.Arn, maxReceiveCount: 3}}
          D: {Type: AWS::SQS::Queue}
        """)
    result = import_template(write(tmp_path, HEAD + body), output=tmp_path / "c.yaml")
    assert result.functions == ["Fn"]
