"""Defaults for every environment.

The keys, their types, checks and meaning are defined in tasks/settings/table.py; this file exports
their defaults so pyinfra's data precedence applies (all < group < host < --data). Put a value
here to change it for every environment; per-environment values belong in inventories/.
"""

from tasks.settings import defaults as _defaults

globals().update(_defaults())
