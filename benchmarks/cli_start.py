"""Start-up time of the command line: ``--help`` of every command, in fresh interpreters.

Every command path is found by walking the parser (``biomedclip``, ``biomedclip classify``,
``biomedclip eval zeroshot``, ``biomedclip index build``, ...). Each is timed two ways, as
``python -m biomedclip.cli.main CMD --help`` and through the installed console script
``biomedclip CMD --help``, each run a new process (wall clock, spawn to exit), beside
``python -c pass`` (the interpreter's own start-up, the floor). Warm-up, then interleaved repetitions
(:func:`_bench.interleaved`), medians. The target is every command under ``--limit`` seconds
(0.25 s by default). The package is imported from this checkout's ``src`` (``PYTHONPATH``).

Bytecode: an installed package runs from ``.pyc`` files (pip compiles them), so by default the
runs get a private ``PYTHONPYCACHEPREFIX`` that the warm-up fills (``PYTHONDONTWRITEBYTECODE`` is
lifted for them); ``--no-bytecode-cache`` keeps the caller's environment instead (with
``PYTHONDONTWRITEBYTECODE=1`` every run then compiles the package's modules from source).

    python benchmarks/cli_start.py [--repeats 5] [--limit 0.25] [--no-bytecode-cache]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import ROOT, interleaved, write_result  # noqa: E402  (first: load average)

SRC = ROOT / "src"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
FLOOR = "python -c pass"
CPU: dict[str, list[float]] = {}  # variant -> user + system CPU seconds of each run (warm-up first)


def command_paths() -> list[tuple[str, ...]]:
    """Every command path of the parser, the top level (``()``) first."""
    sys.path.insert(0, str(SRC))
    from biomedclip.cli.main import build_parser

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]):
        yield path
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, (*path, name))

    return list(walk(build_parser(), ()))


def console_script() -> str | None:
    """The ``biomedclip`` script beside this interpreter (the venv's), else on ``PATH``."""
    beside = Path(sys.executable).with_name("biomedclip")
    return str(beside) if beside.is_file() else shutil.which("biomedclip")


def runner(name: str, argv: list[str]):
    def run() -> None:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(argv, env=ENV, capture_output=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        CPU.setdefault(name, []).append(cpu)
        if out.returncode != 0 or (b"usage:" not in out.stdout and argv[-1] == "--help"):
            raise RuntimeError(f"{' '.join(argv)} failed ({out.returncode}): {out.stderr[-500:]!r}")

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per variant (default: 5)")
    ap.add_argument("--limit", type=float, default=0.25, help="target seconds (default: 0.25)")
    ap.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="run in the caller's environment (no private .pyc cache)",
    )
    args = ap.parse_args()
    bytecode = "as the caller's environment says"
    if not args.no_bytecode_cache:
        ENV.pop("PYTHONDONTWRITEBYTECODE", None)
        ENV["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="cli_start_pyc_")
        bytecode = (
            "cached (private PYTHONPYCACHEPREFIX filled by the warm-up, as after pip install)"
        )
    else:
        bytecode += f" (PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE')})"

    paths = command_paths()
    script = console_script()
    variants = {FLOOR: runner(FLOOR, [sys.executable, "-c", "pass"])}
    for path in paths:
        name = " ".join(("biomedclip", *path))
        variants[f"python -m: {name}"] = runner(
            f"python -m: {name}", [sys.executable, "-m", "biomedclip.cli.main", *path, "--help"]
        )
        if script:
            variants[f"script: {name}"] = runner(f"script: {name}", [script, *path, "--help"])
    print(f"{len(paths)} commands, {len(variants)} variants, {args.repeats} repeats", flush=True)
    timings = interleaved(variants, args.repeats)

    rows = {
        name: {
            "median_s": round(timings.median(name), 4),
            "runs_s": [round(t, 4) for t in runs],
            "cpu_median_s": round(statistics.median(CPU[name][1:]), 4),  # the warm-up left out
        }
        for name, runs in timings.runs.items()
    }
    commands = {k: v for k, v in rows.items() if k != FLOOR}
    slowest = max(commands, key=lambda k: commands[k]["median_s"])
    over = sorted(k for k, v in commands.items() if v["median_s"] >= args.limit)
    floor = rows[FLOOR]["median_s"]
    for name, row in sorted(rows.items(), key=lambda kv: -kv[1]["median_s"]):
        print(f"{row['median_s']:.3f} s (cpu {row['cpu_median_s']:.3f} s)  {name}")
    print(
        f"slowest: {slowest} {commands[slowest]['median_s']:.3f} s; interpreter floor {floor:.3f} s"
    )
    out = write_result(
        "cli_start",
        {
            "what": "wall-clock seconds of `--help` per command in a fresh process (median), and "
            "the process's user + system CPU seconds (median; less sensitive to other load)",
            "limit_s": args.limit,
            "repeats": args.repeats,
            "commands": [" ".join(("biomedclip", *p)) for p in paths],
            "console_script": script,
            "bytecode": bytecode,
            "python_floor_median_s": floor,
            "slowest": {"variant": slowest, "median_s": commands[slowest]["median_s"]},
            "over_limit": over,
            "all_under_limit": not over,
            "variants": rows,
        },
    )
    print(f"wrote {out}")
    if over:
        sys.exit(f"{len(over)} variants at or over {args.limit} s: {over}")


if __name__ == "__main__":
    main()
