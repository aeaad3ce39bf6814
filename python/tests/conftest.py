"""Shared fixtures: the repository's files, the `polyepo` binary and the real model."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def polyepo_binary() -> pathlib.Path:
    """The `polyepo` command: $POLYEPO_BIN, else the newest of target/{release,debug}."""
    if os.environ.get("POLYEPO_BIN"):
        return pathlib.Path(os.environ["POLYEPO_BIN"])
    found = [p for p in (ROOT / "target/release/polyepo", ROOT / "target/debug/polyepo") if p.is_file()]
    if not found:
        pytest.fail("no polyepo binary: run `cargo build --bin polyepo` (or set POLYEPO_BIN)")
    return max(found, key=lambda p: p.stat().st_mtime)


@pytest.fixture(scope="session")
def polyepo_bin() -> pathlib.Path:
    return polyepo_binary()


@pytest.fixture(scope="session")
def smollm2() -> pathlib.Path:
    if not MODEL.is_file():
        pytest.fail(f"{MODEL} is missing: run scripts/fetch-model.sh")
    return MODEL


@pytest.fixture(scope="session")
def server(polyepo_bin, smollm2):
    """`polyepo serve` on SmolLM2, on a port the OS picks; yields the API base URL."""
    proc = subprocess.Popen(
        [str(polyepo_bin), "serve", "--model", str(smollm2), "--port", "0", "--name", "smollm2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        if "serving" not in line:
            pytest.fail(f"polyepo serve did not start: {line!r}")
        yield line.strip().split(" on ", 1)[1]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture()
def copy_prompt(tmp_path):
    """A prompt SmolLM2 follows greedily: copy a fixed JSON reply in the judge's schema
    (exercises the whole success path, constrained decoding included, with a real model;
    the judge's taste is not under test)."""
    path = tmp_path / "copy.txt"
    path.write_text(
        "Task {problem}. Copy this text exactly and write nothing else:\n"
        '{"1": {"chain_of_thought": "a", "cluster_id": 0}, "2": {"chain_of_thought": "b", "cluster_id": 1}, '
        '"3": {"chain_of_thought": "c", "cluster_id": 100}}'
    )
    return str(path)
