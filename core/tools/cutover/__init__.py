"""The cutover: the seed's "migrate in one go" sequence as a guided, checked procedure.

1. caught-up: the relay's checkpoint has no replicable record of the source after it (lag 0);
   refused while it has, or waited for (`wait`) up to a time-out; while writers are still on,
   a relay whose checkpoint reaches the head seen one poll earlier counts as caught up;
2. writers: the operator stops every writer of the source (never done here: they are asked and
   confirm), then the source's `$all` is watched until no replicable record arrives for
   `quiet_seconds`; writes that resume during the watch restart the quiet period;
3. final-copy: the relay copies the last events (run here in a thread with `run_relay`, else
   the deployed schedule does it) until the checkpoint again has nothing after it;
4. verify: full or sampled (core.tools.verify); any difference fails the cutover. Afterwards the
   source is checked once more for writes that arrived since the quiet period;
5. subscriptions: every persistent subscription's target start (core.tools.subscriptions plan,
   applied with `apply_subscriptions`) and the catch-up checkpoints of a file translated
   (core.tools.translate batch mode);
6. report: markdown and JSON in `report_dir`, whatever the outcome, each file whole or absent
   (a configuration the command cannot load gets one too: `not_started`, exit 2).

"Replicable" means what the relay copies: user events its filters accept, stream metadata and
deletes of accepted streams. System records (a real server writes `$stats` and projection
records on its own) neither count as lag nor break the quiet period.

Exit codes (CutoverReport.exit_code): 0 completed; 1 a check failed (verify found
differences, writes arrived after the quiet period, a catch-up checkpoint could not be
translated); 2 configuration or connection error; 3 not caught up (refused, or a wait timed
out); 4 aborted by the operator.

Rooms: procedure.py (the steps), report.py (the report and the exit codes).
"""

from core.tools.cutover.procedure import Cutover, CutoverObserver
from core.tools.cutover.report import (
    EXIT_ABORTED,
    EXIT_CHECK_FAILED,
    EXIT_COMPLETED,
    EXIT_ERROR,
    EXIT_NOT_CAUGHT_UP,
    CutoverOptions,
    CutoverReport,
    Lag,
    QuietWatch,
    StepRecord,
)

__all__ = [
    "EXIT_ABORTED",
    "EXIT_CHECK_FAILED",
    "EXIT_COMPLETED",
    "EXIT_ERROR",
    "EXIT_NOT_CAUGHT_UP",
    "Cutover",
    "CutoverObserver",
    "CutoverOptions",
    "CutoverReport",
    "Lag",
    "QuietWatch",
    "StepRecord",
]
