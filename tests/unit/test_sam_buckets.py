"""sam-import: buckets a function's Environment names become local buckets (``buckets:``) when mapped."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bridge.config.model import load_config
from bridge.errors import SamTemplateError
from bridge.sam import Mapping, import_template
from tests.unit.test_sam_import import TEMPLATES, write


def imported(template: Path, tmp_path: Path, **buckets: Path) -> tuple[dict, list[str]]:
    for folder in buckets.values():
        folder.mkdir(exist_ok=True)
    result = import_template(template, output=tmp_path / "config.yaml", maps=Mapping(buckets=dict(buckets)))
    (tmp_path / "config.yaml").write_text(result.text)
    load_config(tmp_path / "config.yaml")  # `lambda-bridge check` passes on it
    return yaml.safe_load(result.text), [str(u) for u in result.unmapped]


def test_a_template_bucket_named_by_ref_in_environment_is_served(tmp_path: Path) -> None:
    config, _ = imported(TEMPLATES / "s3-thumbnail" / "template.yaml", tmp_path,
                         SourceBucket=tmp_path / "up", DestinationBucket=tmp_path / "out")
    name = "s3-thumbnail-images-123456789012-resized"  # !Join ['-', [!Ref SourceBucket, resized]]
    assert config["functions"]["CreateThumbnail"]["environment"]["DESTINATION_BUCKET"] == name
    assert config["buckets"] == {name: "out"}
    assert [s["bucket"] for s in config["sources"]] == ["s3-thumbnail-images-123456789012"]


def test_an_unmapped_bucket_in_environment_is_reported(tmp_path: Path) -> None:
    config, unmapped = imported(TEMPLATES / "s3-thumbnail" / "template.yaml", tmp_path, SourceBucket=tmp_path / "up")
    assert "buckets" not in config
    assert any("Environment.Variables.DESTINATION_BUCKET: bucket DestinationBucket has no local folder" in u
               and "--map bucket:DestinationBucket=" in u for u in unmapped)


def test_a_bucket_given_only_by_name_maps_by_name(tmp_path: Path) -> None:
    template = write(tmp_path, """
        Parameters: {Output: {Type: String, Default: reports}}
        Resources:
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src/
              Handler: app.handler
              Runtime: python3.12
              Environment: {Variables: {OUT: !Sub '${AWS::StackName}-${Output}'}}
    """)
    stack = tmp_path.name
    config, _ = imported(template, tmp_path, **{f"{stack}-reports": tmp_path / "reports"})
    assert config["buckets"] == {f"{stack}-reports": "reports"}
    with pytest.raises(SamTemplateError, match="--map bucket:nope: neither an AWS::S3::Bucket"):
        imported(template, tmp_path, nope=tmp_path / "x")
