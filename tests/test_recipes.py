"""The recipes in configs/: each composes into a valid run for MNIST's shape and its header says how to use it
(issue 10: every recipe states its expected result, its budget and the command that evaluates it)."""
import re
from pathlib import Path

import pytest

from genlab.data.base import DataInfo
from genlab.models import registry
from genlab.run import compose

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
RECIPES = sorted(CONFIGS.glob("*.toml"))


def header(path: Path) -> str:
    """The comment block before the first table."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# "))
    return "\n".join(lines)


def test_there_are_recipes():
    assert len(RECIPES) >= 15


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_builds_for_mnist(path):
    cfg = compose(config_file=str(path))
    cfg.data.validate()
    cfg.train.validate()
    assert cfg.data.source == "mnist"
    info = DataInfo(1, 28, 28, 10, cfg.data.range, cfg.data.binarize, 60000, cfg.data.dequantize)
    model = registry.build(cfg.model, cfg.model_cfg, info)
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_header_names_its_command_budget_and_result(path):
    text = header(path)
    assert f"genlab train --config configs/{path.name}" in text, "the header gives the command that trains it"
    # what to run on the result: an eval, an application, or the script that consumes it
    assert re.search(r"genlab (eval|apply|sample)|python benchmarks/", text), "and the command that evaluates it"
    assert re.search(r"\d+ (min|h)\b|\d+ epochs?", text), "and its budget"
    assert re.search(r"Measured|Expected|[Nn]ot yet run", text), "and what it reached, or that it has not run yet"
