"""A function's dependency manifest (requirements.txt or pyproject.toml), read as hostile input and sanitised."""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from bridge.errors import ManifestError

MANIFESTS = ("requirements.txt", "pyproject.toml")  # the first one present is the manifest, as sam build reads it
# Global options that only say where packages come from or which kind to prefer: never where anything goes.
SOURCE_OPTIONS = {"-i": "--index-url", "--index-url": "--index-url", "--extra-index-url": "--extra-index-url",
                  "-f": "--find-links", "--find-links": "--find-links"}
FLAG_OPTIONS = {"--pre", "--prefer-binary", "--no-index"}
BINARY_OPTIONS = {"--only-binary", "--no-binary"}
INCLUDE_OPTIONS = {"-r", "--requirement"}
URL_SCHEMES = {"http", "https", "git+https", "git+http", "hg+https", "svn+https", "bzr+https"}
HASH_OPTION = re.compile(r"^--hash[=\s]?(sha256|sha384|sha512):[0-9a-fA-F]+$")
PATH_LIKE = re.compile(r"^(\.{1,2}/|/|~|file:)|\.(whl|zip|tar\.gz|tgz|tar\.bz2)$")
ALLOWED = ("allowed: requirements (name[extras] specifier ; marker, name @ https://...), --hash=..., local "
           "paths and file: URLs inside the code folder, -r FILE inside the code folder, --index-url, "
           "--extra-index-url, --find-links, --only-binary, --no-binary, --pre, --prefer-binary, --no-index")
MAX_INCLUDES = 32


@dataclass
class Line:
    """One accepted requirement: where it came from and the text handed to the installer."""

    source: Path
    number: int
    text: str  # as written (continuations joined)
    install: str  # what the installer gets: local paths made absolute
    name: str | None  # canonical project name, when the line names one


@dataclass
class Manifest:
    """The accepted content of a manifest: requirement lines and global options, in order."""

    path: Path
    lines: list[Line] = field(default_factory=list)
    options: list[str] = field(default_factory=list)

    def requirements_text(self) -> str:
        """The sanitised requirements file the installer reads (nothing else from the manifest reaches it)."""
        return "".join(f"{item}\n" for item in [*self.options, *(line.install for line in self.lines)])

    def line_for(self, message: str) -> Line | None:
        """The requirement an installer's message is about (its project name appears in it), if any."""
        text = canonicalize_name(message.replace("_", "-"))
        names = sorted((line for line in self.lines if line.name), key=lambda line: -len(line.name or ""))
        for line in names:
            if re.search(rf"(?<![a-z0-9-]){re.escape(line.name or '')}(?![a-z0-9])", text):
                return line
        return None


def find_manifest(code: Path) -> Path | None:
    """``requirements.txt``, else a ``pyproject.toml`` declaring ``[project] dependencies``, else None."""
    requirements = code / "requirements.txt"
    if requirements.is_file():
        return requirements
    pyproject = code / "pyproject.toml"
    if pyproject.is_file():
        try:
            project = tomllib.loads(pyproject.read_text(errors="replace")).get("project")
        except tomllib.TOMLDecodeError:
            return pyproject  # read_manifest reports it
        if isinstance(project, dict) and ("dependencies" in project or "dependencies" in project.get("dynamic", [])):
            return pyproject
    return None


def read_manifest(path: Path, code: Path) -> Manifest:
    """Parse and check a manifest; every path it names must stay inside ``code``. Raises ManifestError."""
    manifest = Manifest(path)
    if path.name == "pyproject.toml":
        _read_pyproject(path, code, manifest)
    else:
        _read_requirements(path, code.resolve(), manifest, [])
    return manifest


def _read_pyproject(path: Path, code: Path, manifest: Manifest) -> None:
    try:
        data = tomllib.loads(path.read_text(errors="replace"))
    except tomllib.TOMLDecodeError as err:
        raise ManifestError(str(path), None, f"not valid TOML: {err}") from None
    project = data.get("project") if isinstance(data.get("project"), dict) else {}
    if "dependencies" in project.get("dynamic", []):
        raise ManifestError(str(path), None, "[project] dependencies are dynamic; list them in the file "
                            "(or in a requirements.txt) so they can be installed without running the project")
    deps = project.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise ManifestError(str(path), None, "[project] dependencies must be a list of requirement strings")
    for number, text in enumerate(deps, 1):
        if text.strip().startswith("-"):
            raise ManifestError(str(path), None, f"dependency {number} {text!r}: options are not allowed here")
        try:
            manifest.lines.append(_requirement(path, number, text.strip(), code.resolve()))
        except ManifestError as err:  # a list item has no line of its own: name its place in the list
            raise ManifestError(str(path), None, f"[project] dependency {number} {err.reason}") from None


def _read_requirements(path: Path, code: Path, manifest: Manifest, seen: list[Path]) -> None:
    if len(seen) >= MAX_INCLUDES or path.resolve() in seen:
        raise ManifestError(str(path), None, "-r includes loop or nest too deeply")
    seen.append(path.resolve())
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        raise ManifestError(str(path), None, f"cannot read it: {err.strerror}") from None
    for number, line in _logical_lines(text):
        if line.startswith("-"):
            _option(path, number, line, code, manifest, seen)
        else:
            manifest.lines.append(_requirement(path, number, line, code))


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) with comments removed and backslash continuations joined, as pip reads them."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        raw = re.sub(r"(^|\s)#.*$", "", raw)
        if raw.endswith("\\"):
            pending += raw[:-1]
            continue
        line, pending = (pending + raw).strip(), ""
        if line:
            out.append((start, line))
    if pending.strip():
        out.append((start, pending.strip()))
    return out


def _option(path: Path, number: int, line: str, code: Path, manifest: Manifest, seen: list[Path]) -> None:
    """A global option line: only the ones that cannot write anywhere (see ALLOWED)."""
    try:
        words = shlex.split(line)
    except ValueError as err:
        raise ManifestError(str(path), number, f"{line!r}: {err}") from None
    name, _, inline = words[0].partition("=")
    values = [inline] if inline else words[1:]
    if name in FLAG_OPTIONS and not values:
        manifest.options.append(name)
        return
    if len(values) != 1:
        raise ManifestError(str(path), number, f"{line!r} is not an option this manifest may use; {ALLOWED}")
    value = values[0]
    if name in INCLUDE_OPTIONS:
        _read_requirements(_inside(path, number, value, code, line), code, manifest, seen)
    elif name in BINARY_OPTIONS and re.fullmatch(r"[A-Za-z0-9._,:-]+", value):
        manifest.options.append(f"{name} {value}")
    elif name in SOURCE_OPTIONS:
        manifest.options.append(f"{SOURCE_OPTIONS[name]} {_location(path, number, value, code, line)}")
    else:
        raise ManifestError(str(path), number, f"{line!r}: option {name} is not allowed in a manifest (it could "
                            f"change where packages are written or run); {ALLOWED}")


def _location(path: Path, number: int, value: str, code: Path, line: str) -> str:
    """An index or find-links location: an http(s) URL, or a folder inside the code folder (made absolute)."""
    if urlparse(value).scheme in ("http", "https"):
        return value
    return _url_or_path(path, number, value, code, line)


def _requirement(path: Path, number: int, text: str, code: Path) -> Line:
    """One requirement: a PEP 508 requirement, a URL, or a local path inside the code folder."""
    spec, *options = re.split(r"\s+(?=--)", text)
    for option in options:
        if not HASH_OPTION.match(option.strip()):
            raise ManifestError(str(path), number, f"{text!r}: {option.strip()!r} is not allowed after a "
                                "requirement (only --hash=ALGORITHM:DIGEST is)")
    hashes = "".join(f" {option.strip()}" for option in options)
    try:
        requirement = Requirement(spec)
    except InvalidRequirement as err:
        if PATH_LIKE.search(spec) or "://" in spec:
            return Line(path, number, text, _url_or_path(path, number, spec, code, text) + hashes, None)
        raise ManifestError(str(path), number, f"{text!r} is not a requirement: {err}") from None
    if requirement.url:
        url = _url_or_path(path, number, requirement.url, code, text)
        install = f"{requirement.name}{_extras(requirement)} @ {url}"
        install += f" ; {requirement.marker}" if requirement.marker else ""
        return Line(path, number, text, install + hashes, canonicalize_name(requirement.name))
    return Line(path, number, text, str(requirement) + hashes, canonicalize_name(requirement.name))


def _extras(requirement: Requirement) -> str:
    return f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""


def _url_or_path(path: Path, number: int, value: str, code: Path, text: str) -> str:
    """A remote URL as written; a ``file:`` URL or a path checked to lie inside the code folder, made absolute."""
    parsed = urlparse(value)
    if parsed.scheme in URL_SCHEMES:
        return value
    if parsed.scheme == "file":
        return _inside(path, number, unquote(parsed.path), code, text).as_uri()
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter: a Windows drive, not a scheme
        raise ManifestError(str(path), number, f"{text!r}: the scheme {parsed.scheme}: is not allowed; "
                            "use https:// or a path inside the code folder")
    return str(_inside(path, number, value, code, text))


def _inside(path: Path, number: int, value: str, code: Path, text: str) -> Path:
    """``value`` (relative to the manifest's folder) resolved, symlinks included; it must lie inside ``code``."""
    target = (path.parent / value).resolve()
    if not target.is_relative_to(code):
        raise ManifestError(str(path), number, f"{text!r}: {value} lies outside the function's code folder "
                            f"{code}; a manifest may only name files inside it")
    if not target.exists():
        raise ManifestError(str(path), number, f"{text!r}: {target} does not exist")
    return target
