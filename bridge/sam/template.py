"""Load a SAM template (YAML or JSON) with CloudFormation's short tags, keeping the line of every key path."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

try:
    from yaml.cyaml import CParser
except ImportError:  # PyYAML built without libyaml: its pure-Python scanner and parser do the same, slower
    CParser = None

from bridge.errors import SamTemplateError
from bridge.sam.limits import MAX_ALIAS_NODES, MAX_COUNTS, MAX_DEPTH, MAX_TEMPLATE_BYTES

SAM_TRANSFORM = "AWS::Serverless-2016-10-31"
# The short form of each intrinsic function; the long form is ``{"Fn::Name": ...}`` (``Ref``, ``Condition``).
SHORT_TAGS = {
    "!Ref": "Ref", "!Condition": "Condition", "!GetAtt": "Fn::GetAtt", "!Sub": "Fn::Sub", "!Join": "Fn::Join",
    "!If": "Fn::If", "!Equals": "Fn::Equals", "!Not": "Fn::Not", "!And": "Fn::And", "!Or": "Fn::Or",
    "!Select": "Fn::Select", "!Split": "Fn::Split", "!FindInMap": "Fn::FindInMap", "!ImportValue": "Fn::ImportValue",
    "!Base64": "Fn::Base64", "!GetAZs": "Fn::GetAZs", "!Cidr": "Fn::Cidr", "!Transform": "Fn::Transform",
    "!ToJsonString": "Fn::ToJsonString", "!Length": "Fn::Length",
}
Path_ = tuple[Any, ...]
LOGICAL_ID = re.compile(r"[A-Za-z0-9]{1,255}")


@dataclass(frozen=True)
class Template:
    """A parsed template: its data, the file it came from, and the 1-based line of each key path."""

    path: Path
    data: dict[str, Any]
    lines: dict[Path_, int] = field(default_factory=dict)

    def line(self, path: Path_) -> int | None:
        """The line of ``path`` or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None

    def where(self, path: Path_) -> str:
        """``template.yaml:12 Resources.Fn.Properties`` — a location a user can jump to."""
        line = self.line(path)
        return f"{self.path}{f':{line}' if line else ''} {format_path(path)}".rstrip()

    @property
    def resources(self) -> dict[str, Any]:
        """The ``Resources`` section."""
        return self.data.get("Resources") or {}


def format_path(path: Path_) -> str:
    """("Resources", "Fn", "Events", 0) -> ``Resources.Fn.Events[0]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_template(path: str | Path) -> Template:
    """Read and check a SAM template; a SamTemplateError names the file, the line and the fix."""
    path = Path(path)
    try:
        with path.open("rb") as file:  # never more than the limit, whatever the file is (a FIFO, /dev/zero)
            raw = file.read(MAX_TEMPLATE_BYTES + 1)
        text = raw.decode()
    except (OSError, UnicodeDecodeError) as err:
        raise SamTemplateError(f"{path}: cannot read the template: {getattr(err, 'strerror', None) or err}") from None
    return parse_template(text, path)


def parse_template(text: str, path: Path) -> Template:
    """Parse template text; YAML and JSON (a subset of YAML) go through the same composer."""
    if len(text) > MAX_TEMPLATE_BYTES or len(text.encode()) > MAX_TEMPLATE_BYTES:
        raise SamTemplateError(f"{path}: the template is larger than {MAX_TEMPLATE_BYTES:,} bytes, CloudFormation's "
                               "limit (1 MB); split it into nested stacks or move data out of it")
    builder = _Builder(path)
    loader = None
    try:  # reading, composing and building raise YAMLError (a bare "=" is YAML's rare value tag, for one)
        loader = _BoundedLoader(text, path)
        node = loader.get_single_node()
        data = builder.build(node, ()) if node is not None else None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or err
        if "nesting depth" in str(problem):  # libyaml's own limit (deeper than ours) when it comes first
            raise _too_deep(path, mark.line + 1 if mark else 1) from None
        raise SamTemplateError(f"{where}: not valid YAML or JSON: {problem}; fix the syntax at that line") from None
    finally:
        if loader is not None:
            loader.dispose()
    template = Template(path, data if isinstance(data, dict) else {}, builder.lines)
    _check_is_sam(template, data)
    return template


def _check_is_sam(template: Template, data: Any) -> None:
    if not isinstance(data, dict):
        raise SamTemplateError(f"{template.path}:1: not a SAM template (the file is not a mapping with Resources)")
    transform = data.get("Transform")
    transforms = transform if isinstance(transform, list) else [transform]
    if SAM_TRANSFORM not in transforms:
        raise SamTemplateError(f"{template.where(('Transform',)) if 'Transform' in data else f'{template.path}:1'}: "
                               f"not a SAM template: it needs 'Transform: {SAM_TRANSFORM}' (got {transform!r})")
    if not isinstance(data.get("Resources"), dict) or not data["Resources"]:
        raise SamTemplateError(f"{template.where(('Resources',))}: a SAM template needs a Resources mapping")
    for section in ("Parameters", "Conditions", "Mappings", "Globals"):
        if not isinstance(data.get(section) or {}, dict):
            raise SamTemplateError(f"{template.where((section,))}: {section} must be a mapping")
    for section, limit in MAX_COUNTS.items():
        if len(data.get(section) or {}) > limit:
            raise SamTemplateError(f"{template.where((section,))}: {len(data[section])} {section.lower()}; "
                                   f"CloudFormation allows at most {limit}: split the template into nested stacks")
    for logical_id, resource in data["Resources"].items():
        if not LOGICAL_ID.fullmatch(logical_id):
            raise SamTemplateError(f"{template.where(('Resources', logical_id))}: logical id {logical_id!r} must be "
                                   "letters and digits only (A-Za-z0-9), as CloudFormation requires")
        if not isinstance(resource, dict) or not isinstance(resource.get("Type"), str) \
                or not isinstance(resource.get("Properties") or {}, dict):
            raise SamTemplateError(f"{template.where(('Resources', logical_id))}: a resource is a mapping with a "
                                   "Type string and, optionally, a Properties mapping")


# Events come from libyaml when PyYAML has it (5x faster than PyYAML's own scanner on a 1 MB template); the
# nodes always come from PyYAML's composer, in Python, where nesting can be counted before it recurses.
_EVENTS: tuple[type, ...] = (CParser,) if yaml.__with_libyaml__ else (Reader, Scanner, Parser)


class _BoundedLoader(Composer, *_EVENTS, SafeConstructor, Resolver):  # type: ignore[misc]
    """A safe loader whose composer refuses nesting deeper than MAX_DEPTH before its recursion could overflow."""

    def __init__(self, text: str, file: Path) -> None:
        if yaml.__with_libyaml__:
            CParser.__init__(self, text)
        else:
            Reader.__init__(self, text)
            Scanner.__init__(self)
            Parser.__init__(self)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.file = file
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        """Compose one node, one level deeper."""
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH + 1 and not self.check_event(yaml.ScalarEvent, yaml.AliasEvent):
                raise _too_deep(self.file, self.peek_event().start_mark.line + 1)
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self.depth -= 1


def _too_deep(file: Path, line: int) -> SamTemplateError:
    return SamTemplateError(f"{file}:{line}: values are nested more than {MAX_DEPTH} deep (mappings and lists "
                            "inside each other, aliases expanded); flatten the structure")


class _Builder:
    """Node tree -> plain data; a short tag becomes its long form; every key path records its line.

    An alias (``*name``) is the very node its anchor names, so a node met again is an alias expansion:
    those are counted, which bounds "billion laughs" templates to MAX_ALIAS_NODES values.
    """

    def __init__(self, file: Path) -> None:
        self.file = file
        self.lines: dict[Path_, int] = {}
        self._scalars = yaml.SafeLoader("")  # PyYAML's own scalar typing (int, bool, null, str ...)
        self._seen: set[int] = set()
        self._repeated = 0

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self._count(node, path)
        self.lines.setdefault(path, node.start_mark.line + 1)
        tag = node.tag
        if tag in SHORT_TAGS:
            return {SHORT_TAGS[tag]: self._short_tag_value(node, path)}
        if tag.startswith("!"):
            raise SamTemplateError(f"{self.file}:{node.start_mark.line + 1}: unknown tag {tag}; CloudFormation's "
                                   f"short forms are {', '.join(sorted(SHORT_TAGS))}")
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        construct = self._scalars.yaml_constructors.get(tag)
        if isinstance(node, yaml.ScalarNode) and construct is not None:  # direct: 2x faster on 500,000 scalars
            return construct(self._scalars, node)
        return self._scalars.construct_object(node, deep=True)

    def _count(self, node: yaml.Node, path: Path_) -> None:
        if len(path) > MAX_DEPTH:
            raise _too_deep(self.file, node.start_mark.line + 1)
        if id(node) not in self._seen:
            self._seen.add(id(node))
            return
        self._repeated += 1
        if self._repeated > MAX_ALIAS_NODES:
            raise SamTemplateError(f"{self.file}:{node.start_mark.line + 1}: aliases (*name) expand to more than "
                                   f"{MAX_ALIAS_NODES:,} values; write the values out or use fewer aliases")

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                raise SamTemplateError(f"{self.file}:{line}: keys must be strings")
            if key in out:
                raise SamTemplateError(f"{self.file}:{line}: {format_path((*path, key))} is given twice; keep one")
            self.lines[(*path, key)] = line
            out[key] = self.build(value_node, (*path, key))
        return out

    def _short_tag_value(self, node: yaml.Node, path: Path_) -> Any:
        if isinstance(node, yaml.ScalarNode):
            if node.tag == "!GetAtt":  # !GetAtt Res.Attr is the list [Res, Attr] in the long form
                resource, _, attribute = node.value.partition(".")
                return [resource, attribute]
            return node.value
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._mapping(node, path)
