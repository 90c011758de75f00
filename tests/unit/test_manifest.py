"""Function manifests read as hostile input: what may reach the installer, what is refused and how it is named."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.build.index import options_of
from bridge.build.manifest import find_manifest, read_manifest
from bridge.build.setup import layer_paths
from bridge.errors import ManifestError


def manifest(tmp_path: Path, text: str, name: str = "requirements.txt") -> tuple[Path, Path]:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / name).write_text(text)
    return code / name, code


REFUSED = [
    ("-e ../..\n", 1, "option -e is not allowed"),
    ("six\n--target /etc\n", 2, "option --target is not allowed"),
    ("six\n--prefix=/usr\n", 2, "option --prefix is not allowed"),
    ("--root /\n", 1, "option --root is not allowed"),
    ("--src /tmp\n", 1, "option --src is not allowed"),
    ("--user\n", 1, "'--user' is not an option this manifest may use"),
    ("-r /etc/passwd\n", 1, "/etc/passwd lies outside the function's code folder"),
    ("-r ../secrets.txt\n", 1, "lies outside the function's code folder"),
    ("--requirement=../../x\n", 1, "lies outside the function's code folder"),
    ("-c constraints.txt\n", 1, "option -c is not allowed"),
    ("x @ file:///etc\n", 1, "/etc lies outside the function's code folder"),
    ("x @ file:../outside\n", 1, "lies outside the function's code folder"),
    ("../pkg\n", 1, "lies outside the function's code folder"),
    ("/etc/passwd.whl\n", 1, "lies outside the function's code folder"),
    ("six --install-option=--prefix=/\n", 1, "is not allowed after a requirement"),
    ("six --config-settings=x=y\n", 1, "is not allowed after a requirement"),
    ("x @ ftp://example.com/x.whl\n", 1, "the scheme ftp: is not allowed"),
    ("--find-links ../wheels\n", 1, "lies outside the function's code folder"),
    ("--index-url file:///etc\n", 1, "/etc lies outside the function's code folder"),
    ("not a requirement ((\n", 1, "is not a requirement"),
    ("six\\\n  --target /etc\n", 1, "is not allowed after a requirement"),
]


@pytest.mark.parametrize(("text", "line", "message"), REFUSED)
def test_lines_that_could_write_outside_are_refused_with_their_line(tmp_path: Path, text: str, line: int,
                                                                    message: str) -> None:
    path, code = manifest(tmp_path, text)
    with pytest.raises(ManifestError) as err:
        read_manifest(path, code)
    assert err.value.line == line and message in str(err.value) and str(path) in str(err.value)


def test_allowed_lines_reach_the_installer_sanitised(tmp_path: Path) -> None:
    path, code = manifest(tmp_path, "# pinned\nsix==1.16.0 --hash=sha256:abc123  # a comment\n"
                                    "requests[socks] >= 2 ; python_version >= '3.8'\n-r more.txt\n"
                                    "--extra-index-url https://example.com/simple\n--only-binary :all:\n"
                                    "./vendored\nlocal @ file:vendored\n")
    (code / "more.txt").write_text("attrs\n")
    (code / "vendored").mkdir()
    lines = read_manifest(path, code).requirements_text().splitlines()
    assert lines == ["--extra-index-url https://example.com/simple", "--only-binary :all:",
                     "six==1.16.0 --hash=sha256:abc123", 'requests[socks]>=2; python_version >= "3.8"', "attrs",
                     str(code / "vendored"), f"local @ {(code / 'vendored').as_uri()}"]


def test_pyproject_dependencies_and_their_refusals(tmp_path: Path) -> None:
    path, code = manifest(tmp_path, '[project]\nname = "fn"\ndependencies = ["six>=1", "x @ file:///etc"]\n',
                          "pyproject.toml")
    assert find_manifest(code) == path
    refused = r"pyproject.toml: \[project\] dependency 2 'x @ file:///etc': /etc lies outside"
    with pytest.raises(ManifestError, match=refused):
        read_manifest(path, code)
    path.write_text('[project]\nname = "fn"\ndynamic = ["dependencies"]\n')
    with pytest.raises(ManifestError, match="dependencies are dynamic"):
        read_manifest(path, code)
    path.write_text('[project]\nname = "fn"\n')
    assert find_manifest(code) is None  # no dependencies: nothing to build
    (code / "requirements.txt").write_text("six\n")
    assert find_manifest(code) == code / "requirements.txt"  # requirements.txt first, as sam build reads it


def test_a_symlink_out_of_the_code_folder_is_outside(tmp_path: Path) -> None:
    path, code = manifest(tmp_path, "-r link.txt\n")
    (tmp_path / "elsewhere.txt").write_text("six\n")
    (code / "link.txt").symlink_to(tmp_path / "elsewhere.txt")
    with pytest.raises(ManifestError, match="lies outside"):
        read_manifest(path, code)


def test_installer_messages_point_at_the_manifest_line(tmp_path: Path) -> None:
    path, code = manifest(tmp_path, "six\nPillow_SIMD==1\npillow\n")
    found = read_manifest(path, code)
    line = found.line_for("Because pillow-simd was not found in the package registry")
    assert line is not None and line.number == 2
    assert found.line_for("nothing about them") is None


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_fuzz_any_manifest_is_accepted_inside_or_refused(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    root = tmp_path_factory.mktemp("fuzz")
    path, code = manifest(root, text)
    try:
        found = read_manifest(path, code)
    except ManifestError as err:
        assert str(path) in str(err)
        return
    for line in found.requirements_text().splitlines():
        assert not line.startswith(("-e", "--editable", "--target", "--prefix", "--root", "-t", "--src", "-r", "-c"))


def test_pip_settings_become_uv_options() -> None:
    assert options_of({"index-url": "https://mirror/simple", "extra-index-url": "file:///a file:///b",
                       "find-links": "/opt/wheels", "no-index": "false"}) == [
        "--index-url=https://mirror/simple", "--extra-index-url=file:///a", "--extra-index-url=file:///b",
        "--find-links=/opt/wheels", "--index-strategy=unsafe-best-match"]


def test_layers_later_first_as_lambda_extracts_them(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for layer in (first, second):
        (layer / "python" / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
        (layer / "bin").mkdir()
    (first / "lib").mkdir()
    sys_path, bins, libs, nodes = layer_paths([first, second], "3.11")
    site = "python/lib/python3.11/site-packages"
    assert sys_path == [f"+{second}/{site}", f"+{first}/{site}", f"{second}/python", f"{first}/python"]
    assert bins == [f"{second}/bin", f"{first}/bin"] and libs == [f"{first}/lib"] and nodes == []
