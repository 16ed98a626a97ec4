"""`python -m lab converge NAME...` — OWNED BY THE DEPLOY ENGINEER. Not implemented by the lab tool.

It will run `pyinfra inventories/lab.py deploy.py` against the lab hosts in .lab/state.json and then
the host checks (tests/host). The lab tool itself knows nothing of the deploy beyond
docs/dev/contracts.md; replace the body below (keep the @command registration).
"""

from lab.cli import arg, command


@command("converge", "run the deploy against lab hosts, then the host checks (deploy engineer)",
         arg("names", nargs="*", metavar="NAME"))
def cmd_converge(ns):
    raise NotImplementedError("owned by deploy engineer")
