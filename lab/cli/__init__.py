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

from typing import TYPE_CHECKING, Any, Literal

from lab.cli import signals, stdout

if TYPE_CHECKING:
    import typer


def make_app() -> typer.Typer:
    """The ``dsrlab`` Typer app with every command registered.

    Help is Rich (boxes, colours) on a terminal and click's plain text when stdout
    is not one (``dsrlab --help | less``, a file): no box drawn at 80 columns.
    """
    import typer

    from lab.cli import datapath, diff, labs, matrix, output, plan, review, run, wireshark

    markup: Literal["rich"] | None = "rich" if output.on_terminal() else None
    app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=markup,
                      help="A packet-level test lab for eBPF direct-server-return load "
                           "balancing.")
    datapath.app.rich_markup_mode = markup
    app.command("up")(labs.up)
    app.command("down")(labs.down)
    app.command("run")(run.run)
    app.command("plan")(plan.plan)
    app.command("clean")(labs.clean)
    app.command("list")(labs.list_labs)
    app.add_typer(datapath.app, name="datapath")
    app.command("review")(review.review)
    app.command("diff")(diff.diff)
    app.command("wireshark")(wireshark.wireshark)
    app.command("matrix", help=matrix.HELP)(matrix.matrix)
    return app


def __getattr__(name: str) -> Any:
    if name == "app":  # ``lab.cli.app``, built on first use
        return make_app()
    raise AttributeError(name)


def main() -> None:
    signals.run(lambda: stdout.guarded(lambda: make_app()(prog_name="dsrlab")))


if __name__ == "__main__":
    main()
