"""Inventory settings: every data key the deploy reads, in one table, validated before connecting.

Where to look:
- `table.py`: the table. Each key's type, default (the only place one is declared, also one that
  follows other settings), check and meaning; `defaults()` is what group_data/all.py exports,
  `effective()` a host's value with such a default applied.
- `checks.py`: the value checks the table names (whitelists matched in full).
- `validation.py`: `problems()` / `validate()`: types, checks, the rules between settings and
  unknown keys.
- inventories/precedence.py: how an inventory's data is layered (defaults < group_data < group <
  host) and validated before pyinfra connects.
"""

from tasks.settings.checks import *  # noqa: F401,F403  (the checks, for tests and inventories)
from tasks.settings.table import (
    BY_NAME,
    LETSENCRYPT,
    LETSENCRYPT_STAGING,
    REQUIRED,
    SETTINGS,
    Setting,
    defaults,
    effective,
)
from tasks.settings.validation import SettingsError, problems, pyinfra_keys, require_defaults, unknown_keys, validate

__all__ = ["BY_NAME", "LETSENCRYPT", "LETSENCRYPT_STAGING", "REQUIRED", "SETTINGS", "Setting", "SettingsError",
           "defaults", "effective", "problems", "pyinfra_keys", "require_defaults", "unknown_keys", "validate"]
