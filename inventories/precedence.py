"""Inventory-time validation, before pyinfra connects to anything: the data each host will see,
layered the way pyinfra layers it, checked against the settings table (tasks/settings/)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tasks import REPO
from tasks.settings import defaults, validate


def group_data(name: str, folder: Path = REPO / "group_data") -> dict[str, Any]:
    """The data a group_data/<name>.py file gives, read the way pyinfra reads it (names with one
    leading underscore, such as `_sudo`, are data: pyinfra takes global arguments from host data)."""
    path = folder / f"{name}.py"
    if not path.exists():
        return {}
    namespace: dict[str, Any] = {"__file__": str(path)}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return {k: v for k, v in namespace.items()
            if not k.startswith("__") and not callable(v) and not isinstance(v, type(re))}


def checked_hosts(hosts: list, group: str, group_values: dict | None = None) -> list:
    """Validate an inventory group's hosts with pyinfra's precedence, then return them unchanged.

    Precedence (low to high): settings defaults < group_data/all.py < group_data/<group>.py <
    the group's own data < each host's data. `--data` overrides are checked again in deploy.py.
    """
    base = {**defaults(), **group_data("all"), **group_data(group), **(group_values or {})}
    for host in hosts:
        name, data = host if isinstance(host, tuple) else (host, {})
        validate({**base, **data}, host=name)
    return hosts
