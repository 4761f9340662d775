"""`editdecay models` and `editdecay data`: what can be loaded and edited."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from .errors import console


def models():
    """List the models editdecay can load."""
    from ..models.registry import list_models

    t = Table(title="models")
    t.add_column("name")
    t.add_column("installed")
    t.add_column("description")
    missing = []
    for name, desc, ok, hint in list_models():
        t.add_row(name, "yes" if ok else "no", desc)
        if not ok and hint:
            missing.append((name, hint))
    console.print(t)
    for name, hint in missing:
        console.print(f"{name} is not installed; install it with: {escape(hint)}")
    console.print(
        "Any local Hugging Face model directory (or an id in the local HF cache) works as --model "
        "too; `editdecay --allow-download` fetches other ids from the hub."
    )


def data():
    """List the bundled edit datasets."""
    from ..data import DATA_FILES_GUIDE
    from ..data.loaders import list_datasets

    t = Table(title="edit datasets")
    t.add_column("name")
    t.add_column("description")
    for info in list_datasets():
        t.add_row(info.name, info.description)
    console.print(t)
    console.print(
        "Your own file: --data-file PATH (JSON/JSONL; CounterFact, zsRE, MEMIT or plain format)."
    )
    console.print(f"Guide to request files (formats, examples, bad records): {DATA_FILES_GUIDE}")
