"""Files that may be shared over a cluster file system: reading one never runs code and notices damage.

- `sha256_file`: the digest recorded when a file is written and compared when it is read back;
- `load_tensors`: a safetensors file read into tensors, a truncated or corrupt one reported by path;
- `check_finite`: NaN / inf refused, naming the file (or object) and the tensor;
- `save_resume_point` / `load_resume_point`: a resumable state (a fine-tuning snapshot, the progress
  of sequential editing) as one directory of safetensors (tensors) and JSON (everything else).

A resume point is `DIR/state.json` plus the `DIR/tensors-<id>.safetensors` it names with its digest.
The tensors are written first and the JSON last, each atomically, and older tensor files are removed
only after the JSON moved on, so a kill at any moment leaves the previous consistent state. Old
torch.save files (`*.pt`) found where a resume point is expected are never loaded (loading one can
execute code): they are ignored with a warning and removed, and the work starts over.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .io import atomic_write

log = logging.getLogger(__name__)

RESUME_FORMAT_VERSION = 1
RESUME_JSON = "state.json"


class IntegrityError(ValueError):
    """A file that is unreadable, changed since it was written, or holds values it must not."""


class ChecksumMismatchError(IntegrityError):
    pass


class NonFiniteError(IntegrityError):
    pass


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def verify_checksum(path: Path, expected: str) -> None:
    _require_file(path)
    if sha256_file(path) != expected:
        raise ChecksumMismatchError(
            f"{path}: checksum mismatch (file changed or truncated since it was written)"
        )


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a truncated or corrupt file raises IntegrityError naming it."""
    path = Path(path)
    _require_file(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise IntegrityError(f"{path}: truncated or corrupt safetensors file ({err})") from err


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")


def save_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor], metadata=None) -> str:
    """Write `tensors` (moved to the CPU) atomically; returns the file's SHA-256."""
    cpu = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    atomic_write(path, lambda tmp: save_file(cpu, str(tmp), metadata=metadata))
    return sha256_file(path)


def count_nonfinite(t: torch.Tensor) -> int:
    """NaN / ±inf entries of `t` (0 at the cost of one `isfinite().all()` when there are none)."""
    if not (t.is_floating_point() or t.is_complex()) or bool(torch.isfinite(t).all()):
        return 0
    return int((~torch.isfinite(t)).sum())


def check_finite(tensors: Mapping[str, torch.Tensor], where: str) -> None:
    for name, t in tensors.items():
        bad = count_nonfinite(t)
        if bad:
            raise NonFiniteError(f"{where}: tensor {name!r} has {bad} non-finite values")


def as_json(value):
    """`value` as it reads back from JSON (tuples become lists): compare saved settings with this."""
    return json.loads(json.dumps(value))


# --------------------------------------------------------------------------- resume points


def save_resume_point(
    directory: str | Path, tensors: Mapping[str, torch.Tensor], meta: dict
) -> None:
    directory = Path(directory)
    _remove_old_pt_file(directory, "its state is saved anew")
    directory.mkdir(parents=True, exist_ok=True)
    name = f"tensors-{uuid.uuid4().hex[:12]}.safetensors"
    digest = save_tensors(directory / name, tensors)
    record = {
        "format_version": RESUME_FORMAT_VERSION,
        "tensors": {"file": name, "sha256": digest},
        "meta": meta,
    }
    text = json.dumps(record, indent=1, default=_refuse_non_json)
    atomic_write(directory / RESUME_JSON, lambda tmp: tmp.write_text(text))
    for old in directory.glob("tensors-*.safetensors"):
        if old.name != name:
            old.unlink()


def load_resume_point(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """(tensors, meta) of the resume point in `directory`, or None when there is none to use.

    A damaged resume point (unreadable JSON, missing or changed tensor file) is reported with a
    warning and treated as absent: resuming is an optimisation, starting over gives the same result.
    """
    directory = Path(directory)
    _remove_old_pt_file(directory, "the work starts over")
    state_json = directory / RESUME_JSON
    if not state_json.is_file():
        return None
    try:
        record = json.loads(state_json.read_text())
        if record.get("format_version") != RESUME_FORMAT_VERSION:
            raise IntegrityError(
                f"{state_json}: unsupported format version {record.get('format_version')}"
            )
        tensor_file = directory / record["tensors"]["file"]
        verify_checksum(tensor_file, record["tensors"]["sha256"])
        return load_tensors(tensor_file), record["meta"]
    except (IntegrityError, KeyError, TypeError, json.JSONDecodeError) as err:
        log.warning("ignoring the unusable resume point %s (%s); starting over", directory, err)
        return None


def remove_resume_point(directory: str | Path) -> None:
    directory = Path(directory)
    _remove_old_pt_file(directory, "nothing is resumed from it")
    if directory.is_dir():
        shutil.rmtree(directory)


def _remove_old_pt_file(directory: Path, consequence: str) -> None:
    """Delete, unread, an old torch.save file at `directory` or at `directory` + `.pt`."""
    for legacy in (directory, directory.with_name(directory.name + ".pt")):
        if legacy.is_file():
            log.warning(
                "ignoring and removing %s: a torch.save file from an earlier version (loading it "
                "could execute code); %s",
                legacy,
                consequence,
            )
            legacy.unlink()


def _refuse_non_json(value):
    raise TypeError(
        f"not JSON-serialisable in a resume point: {type(value).__name__} {value!r:.80} "
        "(tensors belong in the safetensors part)"
    )
