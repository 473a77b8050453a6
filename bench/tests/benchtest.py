"""What the bench tests share: each bench's driver (bench/NAME/run, Python without a .py)
loaded as a module, and the bench programs they run. The programs are made by the same build
that runs these tests (ctest's bench.tests), so a missing one is a failure, never a skip.

Importing this also puts bench/ on sys.path (benchlib, report)."""

import importlib.machinery
import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1]
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))
import benchlib  # noqa: E402


def load_driver(name):
    """bench/NAME/run as a module (named bench_NAME, with '-' as '_')."""
    path = BENCH / name / "run"
    loader = importlib.machinery.SourceFileLoader(f"bench_{name.replace('-', '_')}", str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def program(name):
    """The path of the bench program `name` in TETHER_BIN_DIR (else build/default/bin); fails
    the test when it is not there."""
    path = benchlib.bin_dir() / name
    if not path.exists():
        pytest.fail(f"{name} is not built: no {path}. Build it with `cmake --build BUILD_DIR "
                    f"--target {name}` and point TETHER_BIN_DIR at BUILD_DIR/bin (default: "
                    f"{benchlib.REPO / 'build' / 'default' / 'bin'})", pytrace=False)
    return path
