"""A deploy file for the lab's zero-change test: deploy.py's first N stages, N from the
environment (tests/lab/stages.py says what a stage is). No copy of deploy.py's code: its own
source is cut after the Nth stage call and run, compiled as deploy.py.

    GITEA_DEPLOY_STAGES=2 pyinfra -y inventories/lab.py tests/lab/deploy_prefix.py --limit HOST

Without GITEA_DEPLOY_STAGES, or with N outside 1..(number of stages), it fails before any operation.
"""

import os

from tests.lab import stages

exec(stages.prefix_code(stages.wanted(os.environ, stages.stages())), {"__file__": str(stages.DEPLOY)})
