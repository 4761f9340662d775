"""A trained MEND editor on disk, tied to one model by its fingerprint.

Layout of an editor directory (default `<cache>/mend/<model name>/`, where `editdecay edit --method
mend` looks for it):
    mend.safetensors   the hypernetwork: per-shape networks, per-weight normaliser statistics, step sizes
    mend.json          format version, MendConfig, the edited weights, model name / source / fingerprint,
                       training record (data, steps, seed, held-out ids, timings), the training curve
    curve.csv          the training curve as a table (step, losses, held-out edit success, time)
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from safetensors.torch import load_file, save_file

from ...io import atomic_write
from ...models.registry import LoadedModel, cache_root
from ..config import MendConfig
from ..delta import FingerprintMismatchError
from .network import EditTarget, MendHypernet

FORMAT_VERSION = 1
WEIGHTS_FILE = "mend.safetensors"
META_FILE = "mend.json"
CURVE_FILE = "curve.csv"


class MendNotTrainedError(FileNotFoundError):
    """No trained MEND editor where one was looked for."""


def default_editor_dir(model_name: str) -> Path:
    """`<cache>/mend/<model name>`, the name made safe as one path component."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "--", model_name).strip("-.") or "model"
    return cache_root() / "mend" / safe


@dataclass
class MendEditor:
    """A trained hypernetwork with everything needed to trust it: its config, model and training record."""

    hypernet: MendHypernet
    config: MendConfig
    model_name: str
    model_fingerprint: str
    model_source: str = ""
    training: dict = field(default_factory=dict)
    curve: list[dict] = field(default_factory=list)

    def save(self, directory: str | Path | None = None) -> Path:
        directory = (
            Path(directory) if directory is not None else default_editor_dir(self.model_name)
        )
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.hypernet.state_dict().items()}
        meta = {
            "format_version": FORMAT_VERSION,
            "method": "mend",
            "config": self.config.to_dict(),
            "targets": self.hypernet.describe(),
            "model_name": self.model_name,
            "model_source": self.model_source,
            "model_fingerprint": self.model_fingerprint,
            "training": self.training,
            "curve": self.curve,
        }
        atomic_write(
            directory / WEIGHTS_FILE,
            lambda p: save_file(
                state,
                str(p),
                metadata={
                    "method": "mend",
                    "model_fingerprint": self.model_fingerprint,
                    "format_version": str(FORMAT_VERSION),
                },
            ),
        )
        if self.curve:
            atomic_write(
                directory / CURVE_FILE, lambda p: pd.DataFrame(self.curve).to_csv(p, index=False)
            )
        atomic_write(
            directory / META_FILE, lambda p: p.write_text(json.dumps(meta, indent=1, default=str))
        )
        return directory

    @classmethod
    def load(
        cls, directory: str | Path, lm: LoadedModel | None = None, *, force: bool = False
    ) -> MendEditor:
        """Read an editor; with `lm`, check that it was trained on exactly this model (unless `force`)."""
        directory = Path(directory)
        if not (directory / META_FILE).is_file() or not (directory / WEIGHTS_FILE).is_file():
            raise MendNotTrainedError(f"no trained MEND editor in {directory}")
        meta = json.loads((directory / META_FILE).read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{directory}: unsupported MEND editor format version {meta.get('format_version')} "
                f"(this editdecay reads version {FORMAT_VERSION}); retrain it with `editdecay mend-train`"
            )
        if lm is not None and not force and meta["model_fingerprint"] != lm.fingerprint:
            raise FingerprintMismatchError(
                f"the MEND editor in {directory} was trained on model {meta['model_name']!r} with fingerprint "
                f"{meta['model_fingerprint']}, but {lm.name!r} has fingerprint {lm.fingerprint} (a different or "
                f"changed model); train one for it with `editdecay mend-train --model {lm.name}`"
            )
        config = MendConfig.from_dict(meta["config"])
        targets = [EditTarget(**t) for t in meta["targets"]]
        hypernet = MendHypernet(targets, config.rank, config.n_hidden, config.edit_lr, config.seed)
        hypernet.load_state_dict(load_file(str(directory / WEIGHTS_FILE)), strict=True)
        if lm is not None:
            hypernet.to(next(lm.model.parameters()).device)
        return cls(
            hypernet,
            config,
            meta["model_name"],
            meta["model_fingerprint"],
            meta.get("model_source", ""),
            meta.get("training", {}),
            meta.get("curve", []),
        )


def load_editor(lm: LoadedModel, directory: str | Path | None = None) -> MendEditor:
    """The trained editor for `lm` (from `directory`, default `<cache>/mend/<model name>`)."""
    where = Path(directory) if directory is not None else default_editor_dir(lm.name)
    try:
        return MendEditor.load(where, lm)
    except MendNotTrainedError:
        raise MendNotTrainedError(
            f"no trained MEND editor for model {lm.name!r} in {where}; train one with "
            f"`editdecay mend-train --model {lm.name}`"
            + ("" if directory is None else f" --out {where}")
        ) from None


def artifact_digest(lm: LoadedModel, cfg) -> str:
    """A hash of the trained editor that `cfg` (a MendConfig) would load for `lm`, so results made
    with one trained editor are never mistaken for another's."""
    where = Path(cfg.artifact) if cfg.artifact else default_editor_dir(lm.name)
    weights = where / WEIGHTS_FILE
    if not weights.exists():
        raise MendNotTrainedError(
            f"no trained MEND editor for model {lm.name!r} in {where}; train one with "
            f"`editdecay mend-train --model {lm.name}`"
        )
    h = hashlib.sha256()
    for path in (weights, where / META_FILE):
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:20]


__all__ = [
    "FORMAT_VERSION",
    "MendEditor",
    "MendNotTrainedError",
    "artifact_digest",
    "default_editor_dir",
    "load_editor",
]
