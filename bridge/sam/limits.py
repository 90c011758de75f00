"""The bounds a template from outside runs into: size, nesting, alias expansion, counts and evaluation work.

CloudFormation's own quotas guide them (a template body of at most 1 MB, 200 parameters, 500 resources, 200
mappings); the rest keep any template within seconds and a few hundred MB. docs/sam.md lists them.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_TEMPLATE_BYTES = 1024 * 1024  # CloudFormation: 1 MB for a template body given in S3
MAX_DEPTH = 64  # mappings and lists inside each other (real templates: < 20, state machines included)
MAX_ALIAS_NODES = 100_000  # values built again because an alias (*name) repeats them
MAX_COUNTS = {"Parameters": 200, "Resources": 500, "Mappings": 200}  # CloudFormation's quotas
MAX_EVALUATION_DEPTH = 100  # values and intrinsics inside each other, counted across followed references
MAX_REFERENCE_CHAIN = 32  # a Ref / GetAtt / Condition that leads to another, and so on
MAX_EVALUATION_STEPS = 250_000  # values the intrinsic evaluator visits over the whole import
MAX_VALUE_CHARS = MAX_TEMPLATE_BYTES  # one string built by Fn::Sub / Fn::Join
MAX_BUILT_CHARS = 16 * MAX_TEMPLATE_BYTES  # all strings built by Fn::Sub / Fn::Join over the whole import


class TooLarge(Exception):
    """A string an intrinsic function would build is over MAX_VALUE_CHARS or MAX_BUILT_CHARS (message: which)."""


@dataclass
class Budget:
    """What evaluating one template has spent; each method answers with the limit it would break, or None."""

    steps: int = 0
    depth: int = 0
    chars: int = 0

    def enter(self) -> str | None:
        """Count one evaluation step one level deeper (``leave()`` when it returns, whatever the answer)."""
        self.steps += 1
        self.depth += 1
        if self.depth > MAX_EVALUATION_DEPTH:
            return (f"values and intrinsic functions are nested more than {MAX_EVALUATION_DEPTH} deep, counting "
                    "the references followed; flatten the expression")
        if self.steps > MAX_EVALUATION_STEPS:
            return (f"evaluating the template takes more than {MAX_EVALUATION_STEPS:,} steps (Globals applied to "
                    "many functions, or large values referenced many times); make the template smaller")
        return None

    def leave(self) -> None:
        """Leave the level ``enter()`` entered."""
        self.depth -= 1

    def build(self, length: int) -> None:
        """Count a string about to be built; TooLarge if it (or all of them together) is over the limit."""
        if length > MAX_VALUE_CHARS:
            raise TooLarge(f"builds a string longer than {MAX_VALUE_CHARS:,} characters")
        self.chars += length
        if self.chars > MAX_BUILT_CHARS:
            raise TooLarge(f"would take the strings built by Fn::Sub and Fn::Join past {MAX_BUILT_CHARS:,} "
                           "characters in all")
