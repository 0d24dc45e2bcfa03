"""The ``dsrlab`` command: a thin face over the library.

Here only the Typer app and its commands' registration; each command lives
in its own module (:mod:`lab.cli.labs`: up, down, clean, list;
:mod:`lab.cli.run`; :mod:`lab.cli.plan`; :mod:`lab.cli.review`; :mod:`lab.cli.diff`;
:mod:`lab.cli.wireshark`;
:mod:`lab.cli.datapath`), how everything prints in :mod:`lab.cli.output`,
how a signal stops it in :mod:`lab.cli.signals` and how a failing standard
output ends it in :mod:`lab.cli.stdout`. Each command imports
the library parts it needs when it runs, so that ``dsrlab review`` on a big
pcap does not first load scapy, pyroute2 and the report renderer it never
uses. :func:`main` installs the signal handlers before anything else loads
(Typer included): an interrupt is a clean stop from the first moment.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Literal

from lab.cli import signals, stdout

if TYPE_CHECKING:
    import typer


# every command: its name, the module of lab.cli that holds it, the function
# (datapath is a group of its own: the module's ``app``)
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("labs", "up"), "down": ("labs", "down"), "run": ("run", "run"),
    "plan": ("plan", "plan"), "clean": ("labs", "clean"), "list": ("labs", "list_labs"),
    "datapath": ("datapath", "app"), "review": ("review", "review"), "diff": ("diff", "diff"),
    "wireshark": ("wireshark", "wireshark"), "matrix": ("matrix", "matrix"),
}


def invoked(argv: list[str]) -> str | None:
    """The command ``argv`` (without the program) starts with, if it is one (after an
    option, ``dsrlab --help down``, the group's own help lists them all)."""
    return argv[0] if argv and argv[0] in COMMANDS else None


def make_app(only: str | None = None, *, listing: bool = False) -> typer.Typer:
    """The ``dsrlab`` Typer app with every command registered, or with ``only`` that
    one: Typer reads every command's parameters when it builds the app, a tenth of a
    second for all of them, which ``dsrlab down`` need not pay for ``run``'s.
    ``listing``: every command registered by its help text alone, for the group's
    own help (``dsrlab``, ``dsrlab --help``), which lists them and runs none.

    Help is Rich (boxes, colours) on a terminal and click's plain text when stdout
    is not one (``dsrlab --help | less``, a file): no box drawn at 80 columns.
    """
    import importlib

    import typer

    from lab.cli import output

    markup: Literal["rich"] | None = "rich" if output.on_terminal() else None
    app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=markup,
                      help="A packet-level test lab for eBPF direct-server-return load "
                           "balancing.")
    app.callback()(_group)  # a group even with one command registered
    groups: list[tuple[str, str]] = []  # listed: Typer lists the groups after the commands
    for name, (module_name, attr) in COMMANDS.items():
        if only is not None and name != only:
            continue
        module = importlib.import_module(f"lab.cli.{module_name}")
        command = getattr(module, attr)
        if listing:
            help_text = _help_of(command, module)
            if isinstance(command, typer.Typer):
                groups.append((name, help_text))
            else:
                app.command(name, help=help_text)(_listed)
        elif isinstance(command, typer.Typer):
            command.rich_markup_mode = markup
            app.add_typer(command, name=name)
        else:
            app.command(name, help=module.HELP if name == "matrix" else None)(command)
    for name, help_text in groups:
        app.command(name, help=help_text)(_listed)
    return app


def _help_of(command: Any, module: Any) -> str:
    """The help a command (or a group: its ``help``) is registered with."""
    import inspect

    import typer

    if isinstance(command, typer.Typer):
        return str(command.info.help or "")
    return str(getattr(module, "HELP", None) if command.__name__ == "matrix" else
               inspect.getdoc(command) or "")


def _listed() -> None:
    """A command as the group's help lists it (never run: ``main`` builds the real one
    whenever argv names a command)."""


def _group() -> None:
    """A packet-level test lab for eBPF direct-server-return load balancing."""


def __getattr__(name: str) -> Any:
    if name == "app":  # ``lab.cli.app``, built on first use
        return make_app()
    raise AttributeError(name)


def main() -> None:
    only = invoked(sys.argv[1:])
    signals.run(lambda: stdout.guarded(
        lambda: make_app(only, listing=only is None)(prog_name="dsrlab")))


if __name__ == "__main__":
    main()
