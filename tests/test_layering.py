"""DESIGN section 2: a module imports only from the layers below it; nothing imports cli."""

import ast
from pathlib import Path

import rnnlab

PACKAGE = Path(rnnlab.__file__).parent

LAYERS = [
    {"errors"},
    {"files", "config", "vocab", "interrupts", "ctxkeys", "ctxmatch", "ctxtree"},
    {"options"},
    {"scan", "ctxtables"},
    {
        "corpus",
        "data",
        "model",
        "cells",
        "distributed",
        "rundir",
        "controls",
        "completion",
        "contextmix",
    },
    {
        "checkpoint",
        "beam",
        "bpc",
        "ladder",
        "wins",
        "tokens",
        "dynamic",
        "adaptive",
        "optimizers",
        "ctxrun",
    },
    {"rzformat", "rzmodel", "sampling"},
    {"progress", "finetune", "compression", "plan"},
    {"startup"},
    {"keeping"},
    {"training", "evaluation"},
    {"viz", "lab", "serve", "export"},
    {"cli", "api", "__init__", "__main__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}
STDLIB_ONLY = {"errors", "files", "config", "vocab", "options", "interrupts", "__init__"}


def rnnlab_imports(path: Path) -> tuple[set[str], set[str]]:
    """(rnnlab modules imported, third-party top-level packages imported)."""
    ours, theirs = set(), set()
    depth = len(path.relative_to(PACKAGE).parts) - 1  # 1 inside a subpackage such as viz/
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level and node.level <= depth:
                continue  # a sibling inside the same subpackage
            if node.level:  # relative: from .x import y / from . import x
                if node.module:
                    ours.add(node.module.split(".")[0])
                else:
                    ours.update(a.name for a in node.names)
            elif node.module and node.module.split(".")[0] == "rnnlab":
                ours.add((node.module.split(".") + [a.name for a in node.names])[1])
            elif node.module:
                theirs.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            theirs.update(a.name.split(".")[0] for a in node.names)
    return ours, theirs


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_every_module_has_a_layer():
    for path in PACKAGE.rglob("*.py"):
        assert module_name(path) in RANK, f"{path.name} is not placed in a layer"


def test_imports_only_go_down():
    for path in PACKAGE.rglob("*.py"):
        me = module_name(path)
        ours, theirs = rnnlab_imports(path)
        for other in ours - {me}:
            assert other != "cli" or me == "__main__", f"{me} imports cli"
            if me in ("__init__", "__main__", "cli", "api"):
                continue
            assert RANK[other] < RANK[me], f"{me} (layer {RANK[me]}) imports {other}"
        if me in STDLIB_ONLY:
            assert not theirs & {"torch", "numpy", "safetensors", "tqdm", "matplotlib"}, me


def test_no_utils_module():
    assert not list(PACKAGE.rglob("utils.py"))
