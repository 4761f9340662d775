"""Progress bars for long loops (tqdm on a terminal, quiet in logs and CI)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from tqdm.auto import tqdm


def progress(it: Iterable, desc: str = "", total: int | None = None, disable: bool = False, **kw):
    quiet = disable or os.environ.get("EDITDECAY_NO_PROGRESS") == "1" or not sys.stderr.isatty()
    return tqdm(it, desc=desc, total=total, disable=quiet, leave=False, dynamic_ncols=True, **kw)
