"""A deploy file for `python -m tasks.drift` only: loaded by pyinfra after deploy.py, it adds no
operation and reports what the next deploy of this host would change (tasks/drift/evaluate.py).

Run by hand it refuses: the report directory comes from the drift command.
"""

import os

from pyinfra.api.exceptions import PyinfraError
from pyinfra.context import ctx_host, ctx_state

from tasks.drift import REPORT_DIR_ENV
from tasks.drift.evaluate import write_report

if not os.environ.get(REPORT_DIR_ENV):
    raise PyinfraError("tasks/drift/probe.py is run by `python -m tasks.drift INVENTORY`, not by hand")

write_report(ctx_state.get(), ctx_host.get(), os.environ[REPORT_DIR_ENV])
