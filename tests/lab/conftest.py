"""Lab tests need a Docker engine; `make test` starts one. Without it they skip, saying why."""

import shutil
import subprocess

import pytest

from tests.conftest import skip_because


@pytest.fixture(scope="session")
def lab_engine():
    if not shutil.which("docker"):
        skip_because("no docker client on PATH (make test installs docker.io)")
    from lab import api

    try:
        api.engine()
    except (RuntimeError, subprocess.SubprocessError, OSError) as error:
        skip_because(f"no Docker engine could be started: {error}")
    return api
