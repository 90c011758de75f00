"""A worker's first code: Lambda's sys.path (code, dependencies, layers, runtime, stdlib), then awslambdaric.

Run as ``python -S -s bootstrap.py MODULE ARGS...`` (or ``-c CODE ARGS...``): without ``site`` the
interpreter's own site-packages (the daemon's venv) is never on sys.path, so a handler imports only what
Lambda would give it. Standard library only: it runs before anything else is importable.
"""

import os
import runpy
import site
import sys


def lambda_sys_path() -> None:
    """The folders of ``_LAMBDA_BRIDGE_SYS_PATH`` first (``+``: a site folder, .pth files read), then the stdlib."""
    wanted = os.environ.pop("_LAMBDA_BRIDGE_SYS_PATH", "")
    rest = [p for p in sys.path[1:] if p]  # [0] is this file's folder
    sys.path[:] = []
    for entry in wanted.split(os.pathsep) if wanted else []:
        if entry.startswith("+"):
            site.addsitedir(entry[1:])
        else:
            sys.path.append(entry)
    sys.path.extend(p for p in rest if p not in sys.path)


def main() -> None:
    """Set the path, then run the module (or code) named on the command line as ``__main__``."""
    lambda_sys_path()
    target, args = sys.argv[1], sys.argv[2:]
    if target == "-c":
        sys.argv = ["-c", *args[1:]]
        exec(compile(args[0], "<string>", "exec"), {"__name__": "__main__"})
    else:
        sys.argv = [target, *args]
        runpy.run_module(target, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
