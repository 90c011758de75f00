"""A function's ``Layers`` -> the config's ``layers:`` folders (layer resources of the template with local content)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bridge.sam.draft import Draft
from bridge.sam.intrinsics import Unresolved
from bridge.sam.template import Path_

LAYER_TYPES = {"AWS::Serverless::LayerVersion": "ContentUri", "AWS::Lambda::LayerVersion": "Content"}
ARN_FIX = ("download the layer (aws lambda get-layer-version-by-arn --arn ARN, then unzip its Content.Location) "
           "and add the folder to the function's layers: in the config")


def map_layers(draft: Draft, logical_id: str, raw: Any) -> list[str]:
    """The folders of the function's layers, in order; each layer given by ARN or not local is reported."""
    path: Path_ = ("Resources", logical_id, "Properties", "Layers")
    if not isinstance(raw, list):
        draft.report(path, "Layers is not a list", "give a list of layer references")
        return []
    folders = []
    for index, item in enumerate(raw):
        folder = _layer_folder(draft, (*path, index), item)
        if folder is not None:
            folders.append(draft.relative(folder))
    return folders


def _layer_folder(draft: Draft, path: Path_, item: Any) -> Path | None:
    origin = draft.resolver.origin(item) if isinstance(item, str) else None
    resource = draft.template.resources.get(origin or "") if origin else None
    if isinstance(resource, dict) and resource.get("Type") in LAYER_TYPES:
        return _content(draft, origin or "", resource)
    if isinstance(item, str) and item.startswith("arn:"):
        draft.report(path, f"layer {item} is given by ARN: its content is in AWS, not here", ARN_FIX)
    elif isinstance(item, Unresolved):
        draft.report(path, f"layer {item.reason} is unknown here", ARN_FIX)
    else:
        draft.report(path, f"layer {item!r} is not a layer resource of this template", ARN_FIX)
    return None


def _content(draft: Draft, layer_id: str, resource: dict[str, Any]) -> Path | None:
    """The layer's local folder (ContentUri / Content, relative to the template); reported when not local."""
    key = LAYER_TYPES[resource["Type"]]
    where: Path_ = ("Resources", layer_id, "Properties", key)
    value = draft.resolver.resolve((resource.get("Properties") or {}).get(key), where)
    if not isinstance(value, str) or value.startswith("s3://"):
        draft.report(where, f"layer {layer_id}'s {key} is not a local folder", ARN_FIX)
        return None
    folder = (draft.template.path.parent / value).resolve()
    if not folder.is_dir():
        draft.report(where, f"layer {layer_id}'s {key} {value!r} -> {folder} is not a folder",
                     "fix the path (relative to the template), then import again")
        return None
    # A layer laid out for `sam build` (BuildMethod python3.x: modules at the top, a requirements.txt) is used
    # as it is: `lambda-bridge build` installs its requirements (docs/build.md).
    return folder
