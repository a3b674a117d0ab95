"""Issue 23: no module of rnnlab over 450 lines, no function over 100; split by subject."""

import ast
from pathlib import Path

import rnnlab

PACKAGE = Path(rnnlab.__file__).parent
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 100


def sizes(path: Path) -> tuple[int, dict[str, int]]:
    """(lines of the module, lines of each function over the limit, by name)."""
    text = path.read_text()
    long = {
        node.name: node.end_lineno - node.lineno + 1
        for node in ast.walk(ast.parse(text))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    }
    return len(text.splitlines()), long


def test_no_module_or_function_is_over_its_limit():
    over = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = str(path.relative_to(PACKAGE))
        lines, long = sizes(path)
        if lines > MAX_MODULE_LINES or long:
            over[name] = (lines, long)
    assert not over, f"split these by subject (module lines, functions over): {over}"
