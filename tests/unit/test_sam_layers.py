"""sam-import of layers and runtimes: local layer resources become ``layers:``, the rest is reported."""

from __future__ import annotations

import textwrap
from pathlib import Path

import yaml

from bridge.config.model import load_config
from bridge.sam import import_template

TEMPLATE = """
    Transform: AWS::Serverless-2016-10-31
    Globals:
      Function:
        Layers: [!Ref Shared]
    Resources:
      Shared: {Type: AWS::Serverless::LayerVersion, Properties: {ContentUri: layers/shared/}}
      Plain: {Type: AWS::Lambda::LayerVersion, Properties: {Content: layers/plain}}
      ForSamBuild:
        Type: AWS::Serverless::LayerVersion
        Properties: {ContentUri: layers/built/}
        Metadata: {BuildMethod: python3.12}
      Fn:
        Type: AWS::Serverless::Function
        Properties:
          CodeUri: src/
          Handler: app.handler
          Runtime: python3.12
          Layers: [!Ref Plain, !Ref ForSamBuild, arn:aws:lambda:us-east-1:123456789012:layer:deps:3]
      Go:
        Type: AWS::Serverless::Function
        Properties: {CodeUri: go/, Handler: bootstrap, Runtime: provided.al2023}
"""


def test_layers_runtime_and_any_provided_handler(tmp_path: Path) -> None:
    for folder in ("src", "go", "layers/shared/python", "layers/plain/python", "layers/built"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "layers" / "built" / "requirements.txt").write_text("six\n")
    (tmp_path / "go" / "bootstrap").write_text("#!/bin/sh\n")
    (tmp_path / "go" / "bootstrap").chmod(0o755)
    (tmp_path / "template.yaml").write_text(textwrap.dedent(TEMPLATE))
    result = import_template(tmp_path / "template.yaml", output=tmp_path / "config.yaml")
    (tmp_path / "config.yaml").write_text(result.text)
    config = load_config(tmp_path / "config.yaml")  # what `check` reads: the output must pass it
    fn, go = yaml.safe_load(result.text)["functions"]["Fn"], config.functions["Go"]
    # Globals' layers first, then the function's own, in order; the ARN one reported.
    assert fn["layers"] == ["layers/shared", "layers/plain", "layers/built"]
    assert fn["runtime"] == "python3.12"
    assert (go.handler, go.runtime) == ("bootstrap", "provided")
    unmapped = [str(u) for u in result.unmapped]
    assert any("layer arn:aws:lambda:us-east-1:123456789012:layer:deps:3 is given by ARN" in u
               and "get-layer-version-by-arn" in u for u in unmapped)
    assert not any("ForSamBuild" in u for u in unmapped)  # lambda-bridge build installs its requirements
