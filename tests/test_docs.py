"""The documentation site's promises: the CLI reference names every command and flag of the
registry, every page is in the navigation, and the Python snippets of the getting-started and
API pages run (on a tiny model and a few KB of text written here)."""

import argparse
import importlib.util
import random
import re
from pathlib import Path

import pytest

import rnnlab
from rnnlab import api
from rnnlab.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def cli_reference() -> str:
    spec = importlib.util.spec_from_file_location("gen_cli", DOCS / "gen_cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # __name__ is "gen_cli": defines, writes nothing
    return module.cli_reference()


def sections(markdown: str) -> dict[str, str]:
    """'## title' -> the text up to the next '## '."""
    parts = re.split(r"^## (.+)$", markdown, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_cli_reference_names_every_command_and_flag():
    reference = sections(cli_reference())
    subcommands = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices
    assert list(subcommands) == list(COMMANDS)
    for name, parser in subcommands.items():
        section = reference[f"rnnlab {name}"]
        for action in parser._actions:
            for flag in action.option_strings:
                assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", section), (name, flag)
            if not action.option_strings:  # a positional: its name in the usage line
                assert (action.metavar or action.dest) in section, (name, action.dest)
        assert parser.description and parser.description in section, name


def test_every_page_is_in_the_navigation():
    nav = set(re.findall(r":\s*([\w/-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M))
    pages = {p.name for p in DOCS.glob("*.md")} | {"cli.md"}  # cli.md: generated at build
    assert pages == nav


def test_the_api_page_documents_every_public_name():
    documented = set(re.findall(r"^::: rnnlab\.api\.(\w+)$", (DOCS / "api.md").read_text(), re.M))
    assert documented == set(rnnlab.__all__) - {"__version__"}
    missing = [name for name in rnnlab.__all__ if not hasattr(rnnlab, name)]
    assert not missing, f"public names that do not load: {missing}"


def test_the_architecture_page_states_the_layering_the_test_enforces():
    from test_layering import LAYERS

    page = (DOCS / "architecture.md").read_text()
    rows = re.findall(r"^\| (\d+) \| (.+?) \|$", page, re.M)
    stated = [set(re.findall(r"`(\w+)`", modules)) for _, modules in rows]
    assert stated == LAYERS


def snippets(page: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", (DOCS / page).read_text(), re.M | re.S)


def tiny_text(lines: int, seed: int) -> str:
    rng = random.Random(seed)
    words = ["ROMEO:", "a", "bad", "cab", "head", "jig", "fade", "hide", "bead", "chief", "idea"]
    return "\n".join(" ".join(rng.choice(words) for _ in range(7)) for _ in range(lines)) + "\n"


@pytest.mark.parametrize("page", ["getting-started.md", "api.md"])
def test_the_python_snippets_of_the_page_run(page, tmp_path, monkeypatch):
    code = snippets(page)
    assert code, f"{page} has no Python snippet"
    (tmp_path / "my_text.txt").write_text(tiny_text(150, seed=0))  # about 5 KB
    (tmp_path / "held_out.txt").write_text(tiny_text(20, seed=1))

    def tiny_train(corpus=None, *, out, resume=False, init_from=None, **options):
        """The page's call, on a model and a budget a test can afford."""
        budget = {"max_steps": 6} if resume else {"max_steps": 3}
        if not resume:
            budget |= dict(batch_size=4, seq_len=16, eval_chars=2000, sample_chars=20)
            budget |= dict(device="cpu", autocast_dtype="float32")
        if not resume and init_from is None:
            budget |= dict(hidden_size=16, num_layers=1, embedding_size=8, dropout=0.0)
        options = {k: v for k, v in options.items() if k not in ("minutes", "max_steps")}
        return api.train(corpus, out=out, resume=resume, init_from=init_from, **(options | budget))

    monkeypatch.setattr(rnnlab, "train", tiny_train)
    for block in code:
        # the page's relative paths ("my_text.txt", "runs/a") live in this test's folder
        block = re.sub(
            r"\"((?:runs/[\w-]+)|[\w-]+\.(?:txt|html))\"",
            lambda m: repr(str(tmp_path / m.group(1))),
            block,
        )
        exec(compile(block, f"{page} snippet", "exec"), {"__name__": "snippet"})
    assert (tmp_path / "runs" / "a" / "model.safetensors").is_file()
