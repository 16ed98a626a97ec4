"""Gitea stand-in (lab only): NOT Gitea.

A small Python program that honours the parts of Gitea's container contract the deploy relies on
(app.ini from GITEA__ env vars, health check, metrics, a few API endpoints and CLI commands), so
the lab can exercise the deploy where Gitea itself cannot be obtained. See the README next to the
Dockerfile for what is and is not implemented.
"""

import os

VERSION = os.environ.get("GITEA_STANDIN_VERSION", "1.27.3+standin")
# A fault baked into a lab-only build to test updates (schema.py, README "Versions"); "" = none.
FAULT = os.environ.get("GITEA_STANDIN_FAULT", "")
NAME = "Gitea stand-in (lab only)"
