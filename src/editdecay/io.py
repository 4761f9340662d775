"""Atomic writes: a reader (or a rerun after a kill) never sees a half-written file or directory."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` on a temporary sibling of `path`, then rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def replace_directory(target: str | Path, write: Callable[[Path], object]) -> Path:
    """Write a directory beside `target` (`write(work_dir)`) and rename it into place, so a kill
    leaves the old `target` (or none) and never a half-written one."""
    target = Path(target)
    work = target.with_name(f".{target.name}.work")
    shutil.rmtree(work, ignore_errors=True)
    write(work)
    if target.exists():
        shutil.rmtree(target)
    work.rename(target)
    return target
