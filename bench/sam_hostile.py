"""Hostile SAM templates against `lambda-bridge sam-import`: wall time, peak RSS and the answer of each."""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HEAD = "Transform: AWS::Serverless-2016-10-31\n"
FUNCTION = ("  Fn:\n    Type: AWS::Serverless::Function\n"
            "    Properties: {CodeUri: src/, Handler: app.handler, Runtime: python3.12}\n")
MEMORY_CAP = 3 * 1024**3  # address-space cap of the child, so a runaway import cannot take the shared machine


def billion_laughs() -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return HEAD + "Metadata:\n" + "".join(f"  {line}\n" for line in lines) + "Resources:\n" + FUNCTION


def aliases_to_one_map() -> str:
    keys = ", ".join(f"k{i}: v" for i in range(1000))
    uses = "".join(f"  u{i}: *big\n" for i in range(20_000))
    return HEAD + f"Metadata:\n  base: &big {{{keys}}}\n{uses}Resources:\n" + FUNCTION


def deep(kind: str, depth: int = 10_000) -> Callable[[], str]:
    def build() -> str:
        if kind == "flow":
            value = "[" * depth + "]" * depth
            return HEAD + f"Metadata: {value}\nResources:\n" + FUNCTION
        if kind == "block":
            body = "".join(f"{' ' * (i + 2)}k:\n" for i in range(depth)) + " " * (depth + 2) + "v\n"
            return HEAD + "Metadata:\n" + body + "Resources:\n" + FUNCTION
        if kind == "json":
            resources = json.dumps({"Fn": {"Type": "AWS::Serverless::Function", "Properties": {
                "CodeUri": "src/", "Handler": "app.handler", "Runtime": "python3.12"}}})
            return ('{"Transform": "AWS::Serverless-2016-10-31", "Metadata": ' + '{"k": ' * depth + '"v"'
                    + "}" * depth + f', "Resources": {resources}}}')
        join = '{"Fn::Join": ["", [' * depth + '"x"' + "]]}" * depth  # nested Fn::Join in an env variable
        return json.dumps({"Transform": "AWS::Serverless-2016-10-31", "Resources": {"Fn": {
            "Type": "AWS::Serverless::Function", "Properties": {
                "CodeUri": "src/", "Handler": "app.handler", "Runtime": "python3.12",
                "Environment": {"Variables": {"V": "@JOIN@"}}}}}}).replace('"@JOIN@"', join)
    return build


def big_template(megabytes: int = 50) -> Callable[[], str]:
    def build() -> str:
        line = "  k{}: " + "x" * 80 + "\n"
        count = megabytes * 1024 * 1024 // len(line.format(0))
        return HEAD + "Metadata:\n" + "".join(line.format(i) for i in range(count)) + "Resources:\n" + FUNCTION
    return build


def many_parameters(count: int = 850_000) -> Callable[[], str]:
    def build() -> str:
        params = "".join(f"  P{i}: {{Type: String, Default: d}}\n" for i in range(count))
        return HEAD + "Parameters:\n" + params + "Resources:\n" + FUNCTION
    return build


def reference_chain(count: int = 400) -> str:
    """Each queue's name is built from the next one's: a chain of references as deep as the template is long."""
    queues = "".join(f"  Q{i}:\n    Type: AWS::SQS::Queue\n"
                     f"    Properties: {{QueueName: !Sub '${{Q{i + 1}.QueueName}}x'}}\n" for i in range(count))
    return HEAD + "Resources:\n" + queues + f"  Q{count}: {{Type: AWS::SQS::Queue}}\n" + FUNCTION.replace(
        "Runtime: python3.12}", "Runtime: python3.12, Environment: {Variables: {Q: !Ref Q0}}}")


def sub_amplification() -> str:
    """A 4 KB parameter substituted 100,000 times into one string (400 MB if nothing stops it)."""
    return (HEAD + f"Parameters:\n  P: {{Type: String, Default: {'x' * 4096}}}\nResources:\n"
            + FUNCTION.replace("Runtime: python3.12}", "Runtime: python3.12, Environment: {Variables: "
                               f"{{V: !Sub '{'${P}' * 100_000}'}}}}}}"))


def globals_amplification() -> str:
    """A large Globals section applied to 400 functions: each function resolves it again."""
    variables = ", ".join(f"V{i}: !Sub '${{AWS::Region}}-{i}'" for i in range(2000))
    functions = "".join(FUNCTION.replace("  Fn:", f"  Fn{i}:") for i in range(400))
    return (HEAD + f"Globals:\n  Function:\n    Environment: {{Variables: {{{variables}}}}}\n"
            + "Resources:\n" + functions)


def just_under_the_size_limit(kind: str) -> Callable[[], str]:
    """About 1 MB (the size limit) of the costliest values to parse: one-character scalars or short keys."""
    def build() -> str:
        body = ("Metadata: [" + ",".join("1" * 500_000) + "]\n" if kind == "scalars"
                else "Metadata:\n" + "".join(f"  k{i}: 1\n" for i in range(85_000)))
        return HEAD + body + "Resources:\n" + FUNCTION
    return build


CASES: dict[str, Callable[[], str]] = {
    "billion-laughs": billion_laughs, "20k-aliases-to-1k-map": aliases_to_one_map,
    "deep-flow-10k": deep("flow"), "deep-block-10k": deep("block"), "deep-json-10k": deep("json"),
    "deep-join-10k": deep("join"), "50MB": big_template(50), "850k-parameters": many_parameters(850_000),
    "400-reference-chain": reference_chain, "sub-amplification": sub_amplification,
    "globals-x400-functions": globals_amplification, "1MB-of-scalars": just_under_the_size_limit("scalars"),
    "1MB-of-keys": just_under_the_size_limit("keys"),
}


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def run_case(name: str, text: str, folder: Path, timeout: float) -> dict[str, object]:
    """One import in a child process under /usr/bin/time -v: seconds, peak RSS (MB), exit code, last line."""
    path = folder / f"{name}.yaml"
    path.write_text(text)
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "bridge.cli", "sam-import", str(path),
               "-o", str(folder / f"{name}.config.yaml")]
    start = time.perf_counter()
    try:
        # SAM_BENCH_SOURCE: a folder holding another bridge/ to measure (e.g. `git archive main bridge`)
        env = {**os.environ, "PYTHONPATH": os.environ.get("SAM_BENCH_SOURCE", "")}
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, preexec_fn=_cap_memory,
                              cwd=folder, env=env, check=False)
    except subprocess.TimeoutExpired:
        return {"case": name, "size_kb": len(text) // 1024, "seconds": f">{timeout}", "cpu_seconds": "?", "rss_mb": "?",
                "exit": "killed", "answer": "timeout"}
    seconds = time.perf_counter() - start
    report = [line for line in done.stderr.splitlines() if "Maximum resident set size" in line]
    rss = int(report[0].rsplit(":", 1)[1]) // 1024 if report else -1
    cpu = sum(float(line.rsplit(":", 1)[1]) for line in done.stderr.splitlines()
              if line.strip().startswith(("User time", "System time")))  # what a loaded machine does not inflate
    lines = [line for line in done.stderr.splitlines() if not line.startswith(("\t", "Command"))]
    answer = next((line for line in lines if line.strip()), "")[:150]
    exit_code = next((line.rsplit(":", 1)[1].strip() for line in done.stderr.splitlines() if "Exit status" in line),
                     str(done.returncode))
    traceback = "Traceback" in done.stderr
    return {"case": name, "size_kb": len(text.encode()) // 1024, "seconds": round(seconds, 2),
            "cpu_seconds": round(cpu, 2), "rss_mb": rss,
            "exit": exit_code, "traceback": traceback, "answer": answer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a case is killed")
    parser.add_argument("cases", nargs="*", default=list(CASES), help=f"some of: {', '.join(CASES)}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "src").mkdir()
        (folder / "src" / "app.py").write_text("def handler(event, context):\n    return event\n")
        for name in args.cases:
            print(json.dumps(run_case(name, CASES[name](), folder, args.timeout)), flush=True)


if __name__ == "__main__":
    main()
