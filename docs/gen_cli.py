"""The CLI reference (cli.md), generated from the command registry so it cannot drift from
``--help``: one section per entry of ``rnnlab.cli.COMMANDS``, holding exactly what
``rnnlab COMMAND --help`` prints. mkdocs-gen-files runs this file at build time;
``python docs/gen_cli.py`` prints the page; tests/test_docs.py checks it names every flag.
"""

from __future__ import annotations

import argparse
import functools

from rnnlab.cli import COMMANDS, DefaultsOnce, build_parser

WIDTH = 100  # fixed, so the page does not depend on the terminal that builds it


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each command's parser, in the registry's order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise RuntimeError("rnnlab's parser has no subcommands")


def cli_reference() -> str:
    parser = build_parser()
    commands = subparsers(parser)
    lines = [
        "# CLI reference",
        "",
        "Generated from the command registry (`rnnlab.cli.COMMANDS`) and each command's parser "
        "by `docs/gen_cli.py` when the site is built: each section is what `rnnlab COMMAND "
        "--help` prints. Exit codes and what lands on disk: "
        "[the run directory](run-directory.md).",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    for name in COMMANDS:
        summary = (commands[name].description or "").replace("|", "\\|")
        lines.append(f"| [`rnnlab {name}`](#rnnlab-{name}) | {summary} |")
    for name in COMMANDS:
        sub = commands[name]
        sub.formatter_class = functools.partial(DefaultsOnce, width=WIDTH)
        lines += ["", f"## rnnlab {name}", "", "```text", sub.format_help().rstrip(), "```"]
    return "\n".join(lines) + "\n"


if __name__ == "<run_path>":  # run by mkdocs-gen-files
    import mkdocs_gen_files

    with mkdocs_gen_files.open("cli.md", "w") as f:
        f.write(cli_reference())
elif __name__ == "__main__":
    print(cli_reference(), end="")
