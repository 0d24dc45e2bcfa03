"""The one-line verdicts of ``dsrlab run``: a scenario's (``PASS: seed, 6 of 6 claims
passed``) and ``--all``'s. Their own module: ``run`` and ``--datapath both`` print them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.text import Text

    from lab.runner.scenario import ScenarioRun


def run_verdict(res: ScenarioRun) -> Text:
    """The run's last line: ``PASS: seed, 6 of 6 claims`` or ``FAIL: seed, 2 of 6
    claims failed`` (and the diagnosis count)."""
    from rich.text import Text
    claims = res.result.claims if res.result else []
    failed = sum(not c.passed for c in claims)
    if res.passed:
        return Text.assemble(("PASS", "bold green"), f": {res.scenario.name}, "
                             f"{len(claims)} of {len(claims)} claims passed")
    what = f"{failed} of {len(claims)} claims failed" if claims else "not checked"
    diagnoses = len(res.result.diagnoses) if res.result else 0
    why = f" ({diagnoses} diagnosis line{'s' * (diagnoses != 1)} above)" if diagnoses else ""
    return Text.assemble(("FAIL", "bold red"), f": {res.scenario.name}, {what}{why}")


def all_verdict(total: int, failed: int, skipped: int, on: str = "") -> Text:
    """``run --all``'s last line: ``FAIL: 2 of 41 scenarios failed`` or ``PASS: ...``
    (``on``: which datapath ran them, `` on Cilium v1.16.0 (...)``)."""
    from rich.text import Text
    skip = f", {skipped} skipped" if skipped else ""
    if failed:
        return Text.assemble(("FAIL", "bold red"),
                             f": {failed} of {total} scenarios failed{on}{skip}")
    return Text.assemble(("PASS", "bold green"),
                         f": {total - skipped} of {total} scenarios passed{on}{skip}")
