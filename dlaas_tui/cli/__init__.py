"""The command line: the scriptable twin of the TUI.

Each command group lives in its own module with a `register(subparsers)` function. Modules import
nothing heavy at import time, so `dlaas-tui --help` stays fast; handlers import the backend when they
run. Exit codes: 0 ok, 1 failure, 2 bad input (124 for `wait` timing out).
"""
from __future__ import annotations

import importlib
import os
import sys

from .. import __version__


def _words(message: str) -> str:
    return message


def _plural_words(singular: str, plural: str, n: int) -> str:
    return singular if n == 1 else plural


def _argparse():
    """argparse, its messages not looked up through gettext. gettext looks for a catalogue on disk
    at every call (a search that finds none is not remembered): ~8 searches and an import of locale
    to build the parser of one command, 2-4 ms; and importing gettext at all compiles its plural-
    forms tokenizer (~1.5 ms). The app's own words are English only; so are argparse's. Where
    neither module is loaded yet, argparse is imported against a stand-in that gives it the two
    names it takes from gettext (and nothing else sees: the stand-in is gone once argparse is in)."""
    if "argparse" not in sys.modules and "gettext" not in sys.modules:
        words = type(sys)("gettext")
        words.gettext, words.ngettext = _words, _plural_words
        sys.modules["gettext"] = words
        try:
            import argparse
        finally:
            del sys.modules["gettext"]
    import argparse

    argparse._, argparse.ngettext = _words, _plural_words
    return argparse


argparse = _argparse()

# Order here is the order in `--help`.
COMMAND_MODULES = (
    "runs_cmd",
    "manifest_cmd",
    "store_cmd",
    "gpus_cmd",
    "experiments_cmd",
    "budget_cmd",
    "agent_cmd",
    "cluster_cmd",
    "serve_cmd",
)

# The module that registers each command, so that `dlaas-tui runs` imports and builds only the
# parser it needs (tests/unit/test_cli_lean.py checks this against what the modules register).
COMMANDS = {
    **dict.fromkeys(("submit", "runs", "hold", "release", "priority", "show", "logs", "halt", "resume", "delete",
                     "rerun", "results", "wait"), "runs_cmd"),
    **{name.removesuffix("_cmd"): name for name in COMMAND_MODULES if name != "runs_cmd"},
}

DESCRIPTION = """\
Deep-learning training as a service, from the terminal.

With no command, opens the TUI. Every screen has a command here for scripts.
"""

EPILOG = """\
environment:
  DLAAS_HOME=DIR     keep config, state and the local object store under DIR
  DLAAS_PROFILE=P    the profile to use (same as --profile)

exit codes: 0 ok, 1 failure, 2 bad input
"""


def _terminal_columns() -> int:
    """`shutil.get_terminal_size().columns` (COLUMNS, else the terminal, else 80), without importing
    shutil (with bz2, lzma and zlib: ~5 ms) into every command, as argparse's formatter does."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _Help(argparse.HelpFormatter):
    """argparse's help, as wide as shutil would make it (every `add_argument` builds a formatter)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         _terminal_columns() - 2 if width is None else width)


class _RawDescriptionHelp(argparse.RawDescriptionHelpFormatter, _Help):
    pass


def _global_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dlaas-tui",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=_RawDescriptionHelp,
    )
    parser.add_argument("--version", action="version", version=f"dlaas-tui {__version__}")
    parser.add_argument("--profile", "-p", metavar="P", help="profile from the config (default: local)")
    parser.add_argument(
        "--read-only", action="store_true", help="refuse halt, delete, submit, upload and object delete"
    )
    return parser


def build_parser(modules: tuple[str, ...] = COMMAND_MODULES, only: str | None = None) -> argparse.ArgumentParser:
    """The parser of the given command modules; with `only`, of that one command alone (its
    module's other commands are registered into nothing)."""
    parser = _global_parser()
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    target = _Commands(sub) if only is None else _OneCommand(sub, only)
    for name in modules:
        module = importlib.import_module(f"{__name__}.{name}")
        module.register(target)
    return parser


class _Unused:
    """A parser nobody will use: whatever is declared on it is dropped."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: self


class _Commands:
    """The subparsers action as `register` sees it: each command's parser formats help with `_Help`."""

    def __init__(self, sub: argparse._SubParsersAction) -> None:
        self._sub = sub

    def add_parser(self, name: str, **kwargs):
        return self._sub.add_parser(name, **{"formatter_class": _Help, **kwargs})


class _OneCommand(_Commands):
    """... where only `name` gets a real parser."""

    def __init__(self, sub: argparse._SubParsersAction, name: str) -> None:
        super().__init__(sub)
        self._name = name

    def add_parser(self, name: str, **kwargs):
        return super().add_parser(name, **kwargs) if name == self._name else _Unused()


def _command(argv: list[str]) -> str | None:
    """The command `argv` names, when the global options before it are plain ones
    (`--profile P`, `-p P`, `--profile=P`, `-pP`, `--read-only`); None sends argv to the whole
    parser, which answers everything else (help, abbreviations, unknown commands) as it always has."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--profile", "-p"):
            i += 2
        elif arg == "--read-only" or arg.startswith("--profile=") or (arg.startswith("-p") and len(arg) > 2):
            i += 1
        elif arg.startswith("-"):
            return None
        else:
            return arg
    return None


def main(argv: list[str] | None = None) -> int:
    from .context import Context, run_handler

    if argv is None:
        argv = sys.argv[1:]
    if not argv:
        # Plain `dlaas-tui` opens the TUI: every command's parser (and module) is not needed for that.
        args = _global_parser().parse_args([], argparse.Namespace(command=None))
    else:
        command = _command(argv)
        if command in COMMANDS:
            args = build_parser((COMMANDS[command],), only=command).parse_args(argv)
        else:
            args = build_parser().parse_args(argv)
    ctx = Context(profile=args.profile, read_only=args.read_only)
    func = getattr(args, "func", None)
    if func is None:
        from .tui_cmd import launch_tui

        return run_handler(launch_tui, args, ctx)
    return run_handler(func, args, ctx)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
