"""launch.sh's reader of torchrun's standard error: what the ranks print passes through as it comes
(a progress bar too: a line is passed on before it ends once it cannot be torchrun's); torchrun's
own report of failed ranks (its warnings, its ChildFailedError traceback and the table of exit
codes) is held back, and shown at the end unless every failed rank exited with status 2, which is a
rank's one-line refusal (dist_vpg.cli.refuse), already printed. A rank that crashed is shown with its
traceback and torchrun's report, as before.

    torchrun ... 2> >(python -m dist_vpg.torchrun_filter VERDICT_FILE)

VERDICT_FILE gets "refused" when the run ended in a refusal, so that launch.sh exits with 2 (the
exit codes read are those of torchrun's report: "exitcode: N" in its log line and its table).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

# torchrun's logger ([WIE]MMDD hh:mm:ss.micros pid path:line] message), for its own modules
TORCHRUN_LOG = re.compile(r"^\[?[WIE]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ .*torch/distributed/")
MAYBE_LOG = re.compile(r"^\[?([WIE]\d{0,4}( [\d:.]*)?)?$")  # a line that may still become one
TRACEBACK = "Traceback (most recent call last):"
EXIT_CODE = re.compile(r"exitcode\s*:\s*(-?\d+)")
REFUSED = 2  # dist_vpg.cli.refuse's exit status
SIGTERM = 15  # what torchrun stops the other ranks with once one has failed


class Reader:
    """Splits the stream into what passes (written at once) and what is held (torchrun's)."""

    def __init__(self, out):
        self.out, self.held = out, []
        self.partial = ""  # the current line, not yet decided
        self.passing = False  # the current line was passed before it ended
        self.traceback: str | None = None  # a Traceback line, waiting for the line after it
        self.in_report = False  # from torchrun's own traceback to the end

    def feed(self, text: str) -> None:
        *lines, rest = (self.partial + text).split("\n")
        self.partial = ""
        for line in lines:
            self._line(line + "\n")
        if rest:
            self._partial(rest)
        self.out.flush()

    def _line(self, line: str) -> None:
        if self.passing:
            self.passing = False
            self.out.write(line)
        elif self.traceback is not None:
            first, self.traceback = self.traceback, None
            self.in_report = "bin/torchrun" in line or "torch/distributed/run.py" in line
            (self.held.extend if self.in_report else self.out.writelines)([first, line])
        elif self.in_report or TORCHRUN_LOG.match(line):
            self.held.append(line)
        elif line.startswith(TRACEBACK):
            self.traceback = line
        else:
            self.out.write(line)

    def _partial(self, rest: str) -> None:
        undecided = self.in_report or self.traceback is not None
        if self.passing or not (undecided or TRACEBACK.startswith(rest[:34]) or MAYBE_LOG.match(rest[:16])
                                or TORCHRUN_LOG.match(rest)):  # fmt: skip
            self.out.write(rest)
            self.passing = True
        else:
            self.partial = rest

    def close(self) -> None:
        if self.partial:
            self._line(self.partial)
        if self.traceback is not None:
            self.out.write(self.traceback)
        self.out.flush()


def refusal(held: list[str]) -> bool:
    """torchrun's report names failed ranks, and each of them exited with REFUSED, or was stopped
    by torchrun's SIGTERM after another had (a rank slower to refuse than the first)."""
    codes = [int(c) for line in held for c in EXIT_CODE.findall(line)]
    return REFUSED in codes and all(c in (REFUSED, -SIGTERM) for c in codes)


def main(argv: list[str]) -> int:
    reader = Reader(sys.stderr)
    while chunk := os.read(0, 65536):
        reader.feed(chunk.decode(errors="replace"))
    reader.close()
    if refusal(reader.held):
        Path(argv[0]).write_text("refused\n")
    else:
        sys.stderr.writelines(reader.held)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
