"""Every Python block of docs/interop_recipes.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

RECIPES = Path(__file__).resolve().parents[2] / "docs" / "interop_recipes.md"
OPTIONAL = {"torchrl", "tianshou", "supersuit", "stable_baselines3"}


def _blocks() -> list[tuple[str, str]]:
    """(section heading, code) of each ```python block, in order."""
    blocks, heading = [], "intro"
    lines = iter(RECIPES.read_text().splitlines())
    for line in lines:
        if line.startswith("## "):
            heading = line[3:].strip()
        elif line.strip() == "```python":
            code = []
            for inner in lines:
                if inner.strip() == "```":
                    break
                code.append(inner)
            blocks.append((heading, "\n".join(code)))
    return blocks


def _slug(heading: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")[:40]


def _params() -> list:
    # The Tianshou recipe trains and routes the whole test split through Tianshou's Collector
    # (and compiles its numba kernels): about a minute on 2 cores, so it is slow.
    return [
        pytest.param(code, id=_slug(heading),
                     marks=[pytest.mark.slow] if "Tianshou" in heading else [])
        for heading, code in _blocks()
    ]  # fmt: skip


@pytest.mark.parametrize("code", _params())
def test_recipe_runs(code: str) -> None:
    for module in sorted(OPTIONAL):
        if re.search(rf"^\s*(from|import) {module}\b", code, flags=re.MULTILINE):
            pytest.importorskip(module)
    exec(compile(code, str(RECIPES), "exec"), {"__name__": "__recipe__"})  # noqa: S102


def test_every_library_has_a_recipe() -> None:
    headings = " ".join(heading for heading, _ in _blocks())
    for library in ("SyncVectorEnv", "TorchRL", "Tianshou", "SuperSuit"):
        assert library in headings
