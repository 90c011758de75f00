"""``sam-import``: the buckets a function's code names (``Environment``) become local buckets (``buckets:``), so
the handler's S3 calls reach a folder: ``--map bucket:LOGICAL_ID=DIR`` or, for a name only, ``bucket:NAME=DIR``."""

from __future__ import annotations

from typing import Any

from bridge.errors import SamTemplateError
from bridge.sam.draft import Draft

BUCKET_TYPE = "AWS::S3::Bucket"


def template_buckets(draft: Draft) -> set[str]:
    """Logical ids of the template's buckets."""
    return {k for k, r in draft.template.resources.items() if isinstance(r, dict) and r.get("Type") == BUCKET_TYPE}


def local_buckets(draft: Draft) -> dict[str, str]:
    """``buckets:`` for the config: each mapped bucket a function names and no directory source serves."""
    served = {s.value.get("bucket") for s in draft.sources if s.value.get("type") == "directory"}
    declared = template_buckets(draft)
    out: dict[str, str] = {}
    for function, entry in draft.functions.items():
        for variable, value in (entry.value.get("environment") or {}).items():
            target = _mapped(draft, declared, function, variable, value)
            if target is not None and value not in served:
                out[value] = draft.relative(draft.maps.buckets[target])
    for target, folder in draft.maps.buckets.items():
        if f"bucket:{target}" in draft.used_maps:
            continue
        if target not in declared:
            raise SamTemplateError(f"{draft.template.where(('Resources',))}: --map bucket:{target}: neither an "
                                   f"AWS::S3::Bucket of the template ({', '.join(sorted(declared)) or 'none'}) nor a "
                                   "bucket name a function's Environment holds")
        name = draft.resolver.name_of(target)
        if isinstance(name, str) and name not in served:
            out.setdefault(name, draft.relative(folder))  # mapped but unused: served anyway, as asked
    return out


def _mapped(draft: Draft, declared: set[str], function: str, variable: str, value: Any) -> str | None:
    """The ``--map bucket:`` key that gives ``value`` (a bucket name in an environment variable) its folder."""
    if not isinstance(value, str):
        return None
    logical = draft.resolver.origin(value)
    if logical in declared and draft.resolver.name_of(logical) == value:
        if logical not in draft.maps.buckets:
            draft.report(("Resources", function, "Properties", "Environment", "Variables", variable),
                         f"bucket {logical} has no local folder, so the handler's S3 calls to it fail",
                         f"add --map bucket:{logical}=./some/folder")
            return None
        draft.used_maps.add(f"bucket:{logical}")
        return logical
    if value in draft.maps.buckets:
        draft.used_maps.add(f"bucket:{value}")
        return value
    return None
