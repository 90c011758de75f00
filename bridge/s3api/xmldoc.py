"""S3's XML documents: building responses, and reading the few request bodies S3 takes (bounded, no DTDs)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from xml.sax.saxutils import escape

from bridge.s3api.errors import malformed_xml

NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_BODY = 2 * 1024 * 1024  # DeleteObjects (1000 keys) and CompleteMultipartUpload (10000 parts) fit


def document(root: str, children: list[Any]) -> bytes:
    """``<?xml?><root xmlns=S3>children</root>``; children are (tag, value) pairs, nested lists allowed."""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{NAMESPACE}">{render(children)}</{root}>'
            ).encode("utf-8", "replace")


def render(children: list[Any]) -> str:
    """Elements for (tag, value) pairs: a list value nests, None is left out, bools are true/false."""
    out = []
    for tag, value in children:
        if value is None:
            continue
        if isinstance(value, list):
            out.append(f"<{tag}>{render(value)}</{tag}>")
        elif isinstance(value, bool):
            out.append(f"<{tag}>{'true' if value else 'false'}</{tag}>")
        else:
            out.append(f"<{tag}>{escape(str(value))}</{tag}>")
    return "".join(out)


def parse(body: bytes) -> ET.Element:
    """A request body as an element tree with namespaces stripped; MalformedXML for anything else."""
    if not body.strip() or b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise malformed_xml()
    try:
        root = ET.fromstring(body)
    except (ET.ParseError, ValueError):
        raise malformed_xml() from None
    for element in root.iter():
        if isinstance(element.tag, str) and "}" in element.tag:
            element.tag = element.tag.split("}", 1)[1]
    return root


def text(element: ET.Element, tag: str) -> str | None:
    """The text of the child ``tag`` (None if absent)."""
    child = element.find(tag)
    return None if child is None else (child.text or "")
