"""Shared fixtures: the real data in ../shared/data, tokenizers and tiny model directories."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BIOMEDCLIP_SHARED_DATA", ROOT.parent / "shared" / "data"))
REQUIRE_SHARED = os.environ.get("BIOMEDCLIP_REQUIRE_SHARED_DATA") == "1"
HUB_DIR = SHARED / "biomedclip_hub"
EXAMPLES_DIR = HUB_DIR / "example_data" / "biomed_image_classification_example_data"


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data; skips the test when absent (fails in CI)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        msg = f"shared data not found: {path}"
        if REQUIRE_SHARED:
            pytest.fail(msg + " (BIOMEDCLIP_REQUIRE_SHARED_DATA=1)")
        pytest.skip(msg)
    return path


def run_main(capsys, *argv) -> tuple[int, str, str]:
    """``biomedclip ARGV`` in this process: (exit code, stdout, stderr). An argparse exit (usage
    error, --help) gives its code like the console script would."""
    from biomedclip.cli.main import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="session")
def hub_dir() -> Path:
    """The released hub files (config, tokenizer, example images), without weights."""
    return shared_path("biomedclip_hub")


@pytest.fixture(scope="session")
def example_images() -> list[Path]:
    d = shared_path("biomedclip_hub", "example_data", "biomed_image_classification_example_data")
    return sorted(p for p in d.iterdir() if p.is_file())


@pytest.fixture(scope="session")
def released_tokenizer(hub_dir):
    from biomedclip.tokenizer import Tokenizer

    return Tokenizer.from_pretrained(hub_dir)


TINY_WORDS = [
    "a",
    "an",
    "the",
    "this",
    "is",
    "of",
    "photo",
    "image",
    "in",
    "with",
    "and",
    "on",
    "red",
    "green",
    "blue",
    "yellow",
    "black",
    "white",
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "left",
    "right",
    "top",
    "bottom",
    "center",
    "small",
    "large",
    "big",
    "chest",
    "x",
    "ray",
    "brain",
    "mri",
    "ct",
    "bone",
    "histopathology",
    "adenocarcinoma",
    "carcinoma",
    "squamous",
    "cell",
    "lung",
    "tumor",
    "normal",
    "benign",
    "malignant",
    "scan",
    "slide",
    "stain",
]


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A small uncased WordPiece tokenizer made from a word list (no shared data needed)."""
    from biomedclip.tokenizer import Tokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,;:-()")
    vocab += ["##" + chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab += [w for w in TINY_WORDS if w not in vocab]
    return Tokenizer.from_vocab(vocab, context_length=64)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A saved tiny random-weight model directory (safetensors + config + tokenizer)."""
    import torch

    from biomedclip.config import ModelConfig
    from biomedclip.model import BiomedCLIP

    torch.manual_seed(0)
    model = BiomedCLIP(ModelConfig.tiny(vocab_size=tiny_tokenizer.vocab_size))
    out = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(out, tokenizer=tiny_tokenizer)
    return out


# ---- one tiny model trained on the drawn shapes, shared by the train / eval / explain tests -----

SHAPES_STEPS = 800
SHAPES_EVERY = 200  # a checkpoint and the trainer's own validation every 200 steps
SHAPES_N_VAL = 240


@pytest.fixture(scope="session")
def shapes_run(tmp_path_factory) -> dict:
    """configs/tiny_cpu.yaml as shipped (800 steps on 16,000 drawings, ~1.5 min on 2 cores) with
    240 validation drawings, trained ONCE per test session through `biomedclip train` and shared
    by the train, eval and explain tests.

    Keys: ``dir`` (the run directory), ``model`` (its exported ``final`` directory), ``summary``
    (summary.json: the trainer's own validation at the end), ``metrics`` (metrics.jsonl records),
    ``val`` (the validation shards the trainer evaluated on), ``checkpoints`` (step -> the step's
    checkpoint, a model directory: steps 200, 400, 600, 800) and ``evals`` (step -> the trainer's
    validation record of that step). Tests that need a model short of the ceiling take an early
    checkpoint."""
    import json

    import yaml

    from tests.train.conftest import read_metrics, run_cli, write_config

    tmp = tmp_path_factory.mktemp("shapes_run")
    cfg = yaml.safe_load((ROOT / "configs" / "tiny_cpu.yaml").read_text())
    assert cfg["train"]["steps"] == SHAPES_STEPS, "configs/tiny_cpu.yaml changed: check the bars"
    cfg["data"]["shapes"]["n_val"] = SHAPES_N_VAL
    steps = range(SHAPES_EVERY, SHAPES_STEPS + 1, SHAPES_EVERY)
    cfg["output"].update(
        dir=str(tmp / "run"),
        save_every=SHAPES_EVERY,
        eval_every=SHAPES_EVERY,
        keep_last=len(steps),
        tensorboard=True,
    )
    proc = run_cli(["train", str(write_config(tmp / "c.yaml", cfg))], timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    run = tmp / "run"
    metrics = read_metrics(run / "metrics.jsonl")
    return {
        "dir": run,
        "model": run / "final",
        "summary": json.loads((run / "summary.json").read_text()),
        "metrics": metrics,
        "val": sorted((run / "shapes_data").glob("val-*.tar")),
        "checkpoints": {s: run / "checkpoints" / f"step_{s:08d}" for s in steps},
        "evals": {m["step"]: m for m in metrics if "val_zeroshot_accuracy" in m},
    }


# ---- parallel runs: pytest-xdist workers (addopts in pyproject.toml) -------------------------------

if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    # one torch thread per worker (read when torch loads, after this file): the tests' small
    # tensors gain nothing from a second thread, and two workers x two OpenMP threads on two
    # cores spin against each other (measured: a small training loop 3.5 s alone, 12.4 s so)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# the test files that use the session's trained shapes model (`shapes_run`): one work unit, so one
# worker trains it once; a test elsewhere that asks for it fails at collection until listed here
SHAPES_RUN_FILES = ("tests/eval/test_learning.py", "tests/train/test_learning.py")
# folders whose files share costly session fixtures (export: the full-size model and its reference
# embeddings): each folder is one work unit
SHARED_FIXTURE_DIRS = ("tests/export/",)
# ---- issue 26 (whole slides): tests/slide/ is one work unit, its slide tests share fixtures ----
SHARED_FIXTURE_DIRS += ("tests/slide/",)
# ---- end issue 26 ----


def work_unit(nodeid: str) -> str:
    """The xdist work unit of a test: its file (module fixtures are built once), its folder in
    SHARED_FIXTURE_DIRS, or `shapes_run`."""
    path = nodeid.split("::")[0]
    if path in SHAPES_RUN_FILES:
        return "shapes_run"
    return next((d for d in SHARED_FIXTURE_DIRS if path.startswith(d)), path)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Whole work units go to one worker, in the order the workers collected them."""
    from xdist.scheduler import LoadScopeScheduling

    class WorkUnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return WorkUnitScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """Units holding `slow` tests run first under xdist, the shapes model's first of all: the
    longest units start early, so no worker finishes long after the other."""
    strays = [
        i.nodeid
        for i in items
        if "shapes_run" in i.fixturenames and work_unit(i.nodeid) != "shapes_run"
    ]
    if strays:
        raise pytest.UsageError(f"add to SHAPES_RUN_FILES in tests/conftest.py: {strays}")
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return
    units: dict[str, list] = {}
    for item in items:
        units.setdefault(work_unit(item.nodeid), []).append(item)

    seconds = recorded_unit_seconds()

    def heavy_first(name: str) -> tuple[int, float, str]:
        """shapes_run, then the longest units as last measured, then other slow units."""
        if name == "shapes_run":
            return (0, 0.0, name)
        if name in seconds:
            return (1, -seconds[name], name)
        slow = any(i.get_closest_marker("slow") for i in units[name])
        return (2 if slow else 3, 0.0, name)

    items[:] = [i for name in sorted(units, key=heavy_first) for i in units[name]]


# ---- work-unit durations: the longest start first, so the two workers finish together ----
UNIT_SECONDS_FILE = ROOT / "tests" / "unit_seconds.json"
RECORD_ENV = "BIOMEDCLIP_RECORD_UNIT_SECONDS"  # set to 1 to rewrite UNIT_SECONDS_FILE after a run
_unit_seconds: dict[str, float] = {}


def recorded_unit_seconds() -> dict[str, float]:
    """Seconds per work unit from the last recorded full run (an ordering hint only)."""
    try:
        data = json.loads(UNIT_SECONDS_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.get("seconds", {}).items()}


def pytest_runtest_logreport(report):
    if os.environ.get(RECORD_ENV) == "1":
        unit = work_unit(report.nodeid)
        _unit_seconds[unit] = _unit_seconds.get(unit, 0.0) + report.duration


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get(RECORD_ENV) == "1" and "PYTEST_XDIST_WORKER" not in os.environ:
        ranked = dict(sorted(_unit_seconds.items(), key=lambda kv: -kv[1]))
        data = {"note": f"written by a full run with {RECORD_ENV}=1", "seconds": ranked}
        UNIT_SECONDS_FILE.write_text(json.dumps(data, indent=1) + "\n")


def build_full_size_model(hub_dir):
    """The released architecture with seeded random weights and the released tokenizer."""
    import torch

    from biomedclip.config import ModelConfig
    from biomedclip.model import BiomedCLIP
    from biomedclip.tokenizer import Tokenizer
    from biomedclip.transforms import eval_transform

    torch.manual_seed(0)
    model = BiomedCLIP(ModelConfig.biomedclip()).eval()
    model.tokenizer = Tokenizer.from_pretrained(hub_dir)
    model.preprocess = eval_transform(model.config.preprocess)
    return model
