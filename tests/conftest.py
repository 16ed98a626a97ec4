"""Shared test plumbing: a skip always says why, in the summary line (-ra) and on stderr."""

import sys

import pytest


def skip_because(reason: str):
    print(f"SKIP: {reason}", file=sys.stderr)
    pytest.skip(reason)
