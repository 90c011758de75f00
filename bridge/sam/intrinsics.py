"""CloudFormation's intrinsic functions evaluated locally: parameters, pseudo parameters, conditions, names."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bridge.errors import SamTemplateError
from bridge.sam.limits import MAX_REFERENCE_CHAIN, MAX_VALUE_CHARS, Budget, TooLarge
from bridge.sam.template import Path_, Template

SUB_VARIABLE = re.compile(r"\$\{(!?)([^}]*)\}")
# The property that names a resource of each type (Ref and GetAtt return it); else the logical id stands in.
NAME_PROPERTIES = {
    "AWS::SQS::Queue": "QueueName", "AWS::S3::Bucket": "BucketName", "AWS::Serverless::Function": "FunctionName",
    "AWS::Lambda::Function": "FunctionName", "AWS::SNS::Topic": "TopicName", "AWS::DynamoDB::Table": "TableName",
    "AWS::Serverless::SimpleTable": "TableName",
}
SERVICES = {"Serverless": "lambda"}


@dataclass(frozen=True)
class Unresolved:
    """A value that exists only in a deployed stack (an import, an attribute of an AWS-created resource)."""

    reason: str

    def __str__(self) -> str:
        return f"<unresolved: {self.reason}>"


class _NoValue:
    """``AWS::NoValue``: the property is removed."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


def find_unresolved(value: Any) -> Unresolved | None:
    """The first Unresolved inside ``value`` (a scalar, list or mapping), or None."""
    if isinstance(value, Unresolved):
        return value
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for item in items:
        found = find_unresolved(item)
        if found is not None:
            return found
    return None


class Resolver:
    """Evaluates intrinsic functions against parameter values, pseudo parameters and the template's resources.

    A Ref to a resource yields its physical name (its name property, else its logical id); ``origin()`` maps
    any name, ARN or URL produced that way back to the logical id, which is how events find their queues.
    """

    def __init__(self, template: Template, parameters: dict[str, Any], *, region: str, account_id: str,
                 stack_name: str, queue_url: Callable[[str, str], str] | None = None) -> None:
        self.template = template
        # Where a queue of the template lives here (the embedded queue's URL), so handlers that send to
        # !Ref MyQueue reach the local queue; None keeps AWS's URL form.
        self.queue_url = queue_url
        self.parameters = parameters
        self.region = region
        self.account_id = account_id
        self.pseudo = {"AWS::Region": region, "AWS::AccountId": account_id, "AWS::StackName": stack_name,
                       "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com", "AWS::NotificationARNs": [],
                       "AWS::StackId": f"arn:aws:cloudformation:{region}:{account_id}:stack/{stack_name}/local",
                       "AWS::NoValue": NO_VALUE}
        self._names: dict[str, Any] = {}
        self._conditions: dict[str, bool] = {}
        self._stack: list[str] = []
        self._origins: dict[str, str] = {}
        self.budget = Budget()  # a hostile template runs out of it (with a clear error), never out of memory
        self._functions: dict[str, Callable[[Any, Path_], Any]] = {
            "Ref": self._ref, "Fn::GetAtt": self._get_att, "Fn::Sub": self._sub, "Fn::Join": self._join,
            "Fn::If": self._if, "Fn::Equals": self._equals, "Fn::Not": self._not, "Fn::And": self._and,
            "Fn::Or": self._or, "Condition": self._condition_value, "Fn::Select": self._select,
            "Fn::Split": self._split, "Fn::FindInMap": self._find_in_map, "Fn::Base64": self._base64,
            "Fn::GetAZs": self._get_azs, "Fn::ImportValue": self._import_value,
        }

    # --- the public surface ---------------------------------------------------------------------------

    def resolve(self, value: Any, path: Path_) -> Any:
        """``value`` with every intrinsic evaluated; AWS::NoValue entries removed; Unresolved where unknowable.

        Every call spends from ``budget``: a template nested too deep or too costly to evaluate is an error."""
        try:
            problem = self.budget.enter()
            if problem:
                raise SamTemplateError(f"{self.template.where(path)}: {problem}")
            if isinstance(value, dict):
                return self._resolve_mapping(value, path)
            if isinstance(value, list):  # plain loops: one Python frame per level of nesting
                out = []
                for i, item in enumerate(value):
                    if (resolved := self.resolve(item, (*path, i))) is not NO_VALUE:
                        out.append(resolved)
                return out
            return value
        finally:
            self.budget.leave()

    def _resolve_mapping(self, value: dict[str, Any], path: Path_) -> Any:
        if len(value) == 1:
            (key, arg), = value.items()
            if key in self._functions:
                return self._call(key, arg, path)
            if key.startswith("Fn::"):
                return Unresolved(f"{key} is not evaluated locally")
        out = {}
        for key, item in value.items():
            if (resolved := self.resolve(item, (*path, key))) is not NO_VALUE:
                out[key] = resolved
        return out

    def _call(self, key: str, arg: Any, path: Path_) -> Any:
        try:
            return self._functions[key](arg, path)
        except TooLarge as err:
            raise SamTemplateError(f"{self.template.where(path)}: {key} {err}; a template's values stay under "
                                   "CloudFormation's 1 MB") from None
        except (TypeError, ValueError, IndexError, KeyError, AttributeError) as err:
            # A malformed argument list (hostile or mistyped): one clear error at its line, never a traceback.
            raise SamTemplateError(f"{self.template.where(path)}: {key} has malformed arguments ({err!r}); see "
                                   "CloudFormation's intrinsic function reference for its form") from None

    def condition(self, name: str, path: Path_) -> bool:
        """The value of a condition in ``Conditions``; circular conditions are an error."""
        if name not in self._conditions:
            conditions = self.template.data.get("Conditions") or {}
            if name not in conditions:
                raise SamTemplateError(f"{self.template.where(path)}: condition {name!r} is not defined in "
                                       f"Conditions; defined: {', '.join(conditions) or '(none)'}")
            with_path = ("Conditions", name)
            self._conditions[name] = self._truth(self._guarded(f"Condition {name}", with_path,
                                                               lambda: self.resolve(conditions[name], with_path)),
                                                 with_path)
        return self._conditions[name]

    def origin(self, value: Any) -> str | None:
        """The logical id whose name, ARN or URL ``value`` is (None for anything else)."""
        return self._origins.get(value) if isinstance(value, str) else None

    def name_of(self, logical_id: str) -> Any:
        """The physical name of a resource of the template (Ref's value for most types)."""
        if logical_id not in self._names:
            resource = self.template.resources[logical_id]
            prop = NAME_PROPERTIES.get(resource.get("Type", ""))
            raw = (resource.get("Properties") or {}).get(prop) if prop else None
            path = ("Resources", logical_id, "Properties", prop)
            name = self._default_name(logical_id) if raw is None else self._guarded(f"Ref {logical_id}", path,
                                                                lambda: self.resolve(raw, path))
            self._names[logical_id] = name
            if isinstance(name, str):
                self._origins.setdefault(name, logical_id)
        return self._names[logical_id]

    def _default_name(self, logical_id: str) -> str:
        """CloudFormation generates a name; the logical id stands in (a FIFO queue's name ends in .fifo)."""
        props = self.template.resources[logical_id].get("Properties") or {}
        fifo = self._type(logical_id) == "AWS::SQS::Queue" and self._truth_or_false(props.get("FifoQueue"))
        return f"{logical_id}.fifo" if fifo else logical_id

    def _truth_or_false(self, raw: Any) -> bool:
        value = self.resolve(raw, ())
        return value is True or (isinstance(value, str) and value.lower() == "true")

    # --- references -----------------------------------------------------------------------------------

    def _guarded(self, what: str, path: Path_, compute: Callable[[], Any]) -> Any:
        if what in self._stack:
            cycle = " -> ".join([*self._stack[self._stack.index(what):], what])
            raise SamTemplateError(f"{self.template.where(path)}: circular reference: {cycle}; break the cycle")
        if len(self._stack) >= MAX_REFERENCE_CHAIN:
            raise SamTemplateError(f"{self.template.where(path)}: a chain of more than {MAX_REFERENCE_CHAIN} "
                                   f"references ({self._stack[0]} -> ... -> {what}); shorten it")
        self._stack.append(what)
        try:
            return compute()
        finally:
            self._stack.pop()

    def _ref(self, name: Any, path: Path_) -> Any:
        name = self.resolve(name, path)
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.template.resources:
            return self._resource_ref(name)
        raise SamTemplateError(f"{self.template.where(path)}: !Ref {name} names neither a parameter, a pseudo "
                               "parameter nor a resource of this template; fix the name")

    def _resource_ref(self, logical_id: str) -> Any:
        name = self.name_of(logical_id)
        if isinstance(name, Unresolved) or self._type(logical_id) != "AWS::SQS::Queue":
            return name
        return self._get_att([logical_id, "QueueUrl"], ())  # Ref of a queue is its URL

    def _type(self, logical_id: str) -> str:
        return str(self.template.resources[logical_id].get("Type", ""))

    def _get_att(self, arg: Any, path: Path_) -> Any:
        arg = self.resolve(arg, path)
        if isinstance(arg, str):
            arg = arg.split(".", 1)
        if not (isinstance(arg, list) and len(arg) == 2 and all(isinstance(a, str) for a in arg)):
            raise SamTemplateError(f"{self.template.where(path)}: Fn::GetAtt takes [Resource, Attribute]")
        logical_id, attribute = arg
        if logical_id not in self.template.resources:
            return Unresolved(f"!GetAtt {logical_id}.{attribute} (a resource SAM or another stack creates)")
        name = self.name_of(logical_id)
        value = self._attribute(logical_id, name, attribute)
        if isinstance(value, str):
            self._origins.setdefault(value, logical_id)
        return value

    def _attribute(self, logical_id: str, name: Any, attribute: str) -> Any:
        if isinstance(name, Unresolved):
            return name
        kind = self._type(logical_id)
        if kind == "AWS::SQS::Queue" and attribute in ("Arn", "QueueName", "QueueUrl"):
            url = (self.queue_url(logical_id, name) if self.queue_url
                   else f"https://sqs.{self.region}.amazonaws.com/{self.account_id}/{name}")
            return {"Arn": f"arn:aws:sqs:{self.region}:{self.account_id}:{name}", "QueueName": name,
                    "QueueUrl": url}[attribute]
        if kind in ("AWS::Serverless::Function", "AWS::Lambda::Function") and attribute == "Arn":
            return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{name}"
        if kind == "AWS::S3::Bucket" and attribute == "Arn":
            return f"arn:aws:s3:::{name}"
        if attribute == "Arn" and kind.count("::") == 2:
            service = kind.split("::")[1].lower()
            return f"arn:aws:{SERVICES.get(service, service)}:{self.region}:{self.account_id}:{name}"
        return Unresolved(f"!GetAtt {logical_id}.{attribute} (known only once deployed)")

    # --- string functions -----------------------------------------------------------------------------

    def _sub(self, arg: Any, path: Path_) -> Any:
        text, variables = self._sub_arguments(arg, path)
        values = {k: self.resolve(v, (*path, 1, k)) for k, v in variables.items()}
        pieces: list[Any] = []
        last = 0
        for match in SUB_VARIABLE.finditer(text):
            pieces.append(text[last:match.start()])
            last = match.end()
            if match.group(1):  # ${!Literal} is the text ${Literal}
                pieces.append("${" + match.group(2) + "}")
                continue
            pieces.append(self._sub_variable(match.group(2).strip(), values, path))
        pieces.append(text[last:])
        return _concat(pieces, self.budget)

    def _sub_arguments(self, arg: Any, path: Path_) -> tuple[str, dict[str, Any]]:
        """``"text"`` or ``["text", {variables}]``."""
        if isinstance(arg, str):
            return arg, {}
        if _pair(arg) and isinstance(arg[0], str) and isinstance(arg[1], dict):
            return arg[0], arg[1]
        raise SamTemplateError(f"{self.template.where(path)}: Fn::Sub takes a string or [string, {{vars}}]")

    def _sub_variable(self, name: str, values: dict[str, Any], path: Path_) -> Any:
        if name in values:
            return values[name]
        if "." in name and not name.startswith("AWS::"):
            return self._get_att(name.split(".", 1), path)
        return self._ref(name, path)

    def _join(self, arg: Any, path: Path_) -> Any:
        delimiter, items = self._pair_of(arg, path, "Fn::Join takes [delimiter, [values]]")
        if isinstance(items, Unresolved):
            return items
        if not isinstance(delimiter, str) or not isinstance(items, list):
            raise SamTemplateError(f"{self.template.where(path)}: Fn::Join takes [delimiter, [values]] (a string "
                                   f"and a list; got {type(delimiter).__name__} and {type(items).__name__})")
        pieces: list[Any] = []
        for i, item in enumerate(items):
            pieces.extend([delimiter, item] if i else [item])
        return _concat(pieces, self.budget)

    def _pair_of(self, arg: Any, path: Path_, form: str) -> tuple[Any, Any]:
        if not _pair(arg):
            raise SamTemplateError(f"{self.template.where(path)}: {form}")
        return self.resolve(arg[0], path), self.resolve(arg[1], path)

    def _select(self, arg: Any, path: Path_) -> Any:
        index, items = self._pair_of(arg, path, "Fn::Select takes [index, [values]]")
        if isinstance(items, Unresolved) or isinstance(index, Unresolved):
            return find_unresolved([index, items])
        number = int(str(index)) if str(index).strip().isdigit() else None  # CloudFormation: no sign, no fraction
        if not isinstance(items, list) or number is None or number >= len(items):
            size = f"a list of {len(items)}" if isinstance(items, list) else f"not a list ({type(items).__name__})"
            raise SamTemplateError(f"{self.template.where(path)}: Fn::Select index {index!r} of {size}: the index "
                                   "is a whole number from 0 to the list's length - 1, as CloudFormation requires")
        return items[number]

    def _split(self, arg: Any, path: Path_) -> Any:
        delimiter, text = self._pair_of(arg, path, "Fn::Split takes [delimiter, string]")
        if isinstance(text, Unresolved):
            return text
        if not isinstance(delimiter, str) or not delimiter or not isinstance(text, str):
            raise SamTemplateError(f"{self.template.where(path)}: Fn::Split takes [delimiter, string] (a non-empty "
                                   "delimiter and a string)")
        return text.split(delimiter)

    def _find_in_map(self, arg: Any, path: Path_) -> Any:
        if not (isinstance(arg, list) and len(arg) == 3):
            raise SamTemplateError(f"{self.template.where(path)}: Fn::FindInMap takes [MapName, TopLevelKey, "
                                   "SecondLevelKey]")
        keys = [self.resolve(a, path) for a in arg]
        value: Any = self.template.data.get("Mappings") or {}
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                raise SamTemplateError(f"{self.template.where(path)}: Fn::FindInMap {keys}: {key!r} is not in "
                                       "Mappings; fix the key")
            value = value[key]
        return self.resolve(value, path)

    def _base64(self, arg: Any, path: Path_) -> Any:
        return self.resolve(arg, path)  # the function sees the decoded text; leave it as text

    def _get_azs(self, arg: Any, path: Path_) -> Any:
        return [f"{self.region}{zone}" for zone in "abc"]

    def _import_value(self, arg: Any, path: Path_) -> Any:
        name = self.resolve(arg, path)
        return Unresolved(f"Fn::ImportValue {name} (an output of another stack)")

    # --- conditions -----------------------------------------------------------------------------------

    def _if(self, arg: Any, path: Path_) -> Any:
        if not (isinstance(arg, list) and len(arg) == 3 and isinstance(arg[0], str)):
            raise SamTemplateError(f"{self.template.where(path)}: Fn::If takes [Condition, value if true, if false]")
        chosen = 1 if self.condition(arg[0], path) else 2
        return self.resolve(arg[chosen], (*path, chosen))

    def _condition_value(self, name: Any, path: Path_) -> bool:
        return self.condition(name, path)

    def _equals(self, arg: Any, path: Path_) -> Any:
        if not _pair(arg):
            raise SamTemplateError(f"{self.template.where(path)}: Fn::Equals takes [value, value]")
        left, right = self.resolve(arg[0], path), self.resolve(arg[1], path)
        if find_unresolved([left, right]):
            return find_unresolved([left, right])
        return str(left) == str(right)

    def _not(self, arg: Any, path: Path_) -> bool:
        return not self._truth(self.resolve(arg[0] if isinstance(arg, list) else arg, path), path)

    def _and(self, arg: Any, path: Path_) -> bool:
        return all(self._truth(self.resolve(a, path), path) for a in arg)

    def _or(self, arg: Any, path: Path_) -> bool:
        return any(self._truth(self.resolve(a, path), path) for a in arg)

    def _truth(self, value: Any, path: Path_) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise SamTemplateError(f"{self.template.where(path)}: a condition must be true or false, got {value}; "
                               "conditions cannot depend on values known only once deployed")


def _pair(arg: Any) -> bool:
    return isinstance(arg, list) and len(arg) == 2


def _concat(pieces: list[Any], budget: Budget) -> Any:
    """Join string pieces; any Unresolved piece makes the whole value unresolved; TooLarge past the limits."""
    missing = find_unresolved(pieces)
    if missing is not None:
        return missing
    texts = [_text(p) for p in pieces]
    budget.build(sum(map(len, texts)))  # counted before the string exists
    return "".join(texts)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        parts = [_text(v) for v in value]
        if sum(map(len, parts)) + len(parts) > MAX_VALUE_CHARS:
            raise TooLarge(f"builds a string longer than {MAX_VALUE_CHARS:,} characters")
        return ",".join(parts)
    return str(value)
