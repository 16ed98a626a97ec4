"""The deploy's stages, one module per concern (deploy.py lists them in order)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the repository root: templates/, files/, group_data/
