"""How ``dsrlab`` stops on a signal: SIGINT, SIGTERM, SIGHUP, SIGQUIT... undo what was
started.

CI systems and ``timeout`` stop a job with SIGTERM, a closed terminal sends
SIGHUP, a user presses Ctrl-C or Ctrl-\\ (SIGQUIT), ``kill -USR1`` or ``-ALRM``...
(every signal of :data:`lab.plumbing.interrupts.SIGNALS`): each raises
:class:`~lab.plumbing.interrupts.Interrupted` (a ``KeyboardInterrupt``) in the
main thread, so every ``with`` block and undo step of the run takes down what
it started (namespaces, pod server, captures, BPF objects); further signals
cannot cut that cleanup short. Then, as a last net, whatever a run of *this*
process still holds (its owner file names this process) is removed the way
``dsrlab clean`` would, and ``dsrlab`` exits with 128 + the signal (130 for
SIGINT, 143 for SIGTERM, 129 for SIGHUP, 131 for SIGQUIT) after one line on stderr, no
traceback. ``dsrlab clean --force`` stops a live run with SIGUSR2: the same
clean stop, reported as ``stopped by dsrlab clean (SIGUSR2)`` and exit 140,
so that nobody takes it for a failure of the run. A lab that ``dsrlab up``
has already handed over (its state written) stays up: that was the
command's work.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

from lab.plumbing import interrupts
from lab.safetext import one_line


def _sweep() -> list[str]:
    """Remove what runs owned by this process still hold; what could not go."""
    from lab.env import cleanup

    problems: list[str] = []
    try:
        runs = cleanup.find_runs()
        for res in runs.values():
            if res.owner_pid == os.getpid() and not res.left_up:  # handed over: stays
                problems += [line for line in cleanup.clean_run(res)
                             if line.startswith("could not")]
    except Exception as exc:  # the last net must not turn into a traceback
        problems.append(str(exc))
    return problems


def run(main: Callable[[], object]) -> None:
    """Run ``main`` (the Typer app) with signals turned into a clean stop; exits."""
    interrupts.install()
    code: int | str | None = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT  # reported below, as received() says
    signum = interrupts.received()
    interrupts.finish()  # from here on a signal is held, never raised
    if signum is None:
        sys.exit(code)
    problems = _sweep()
    what = (f"stopped by dsrlab clean ({signal.Signals(signum).name})"
            if signum == interrupts.STOP_BY_CLEAN
            else f"interrupted ({signal.Signals(signum).name})")
    try:
        if problems:
            sys.stderr.write(f"{what}: cleanup incomplete: "
                             f"{one_line('; '.join(problems))} (run dsrlab clean)\n")
        else:
            sys.stderr.write(f"{what}: cleaned up\n")
        sys.stderr.flush()
    except OSError:
        pass
    sys.exit(128 + signum)
