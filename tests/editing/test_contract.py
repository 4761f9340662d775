"""The editor contract, checked for every registered editor on the tiny random model.

Every editor in `editdecay.editing.EDITORS` must:
  - leave the model's weights bit for bit as they were (`edit` returns a delta, it writes nothing);
  - return an EditDelta that applies as W + ΔW exactly and reverts bit for bit (handle and `with`);
  - restore the weights when its solve fails part-way, and say so with an error;
  - survive save → load unchanged (tensors and metadata);
  - refuse, by its model fingerprint, to apply to another model.

A newly registered editor fails here until it gets an `EditorCase` below (a quick config and a way
to make its solve fail).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

from editdecay.editing import EDITORS
from editdecay.editing.config import (
    AlphaEditConfig,
    MemitConfig,
    MendConfig,
    RomeConfig,
    TargetConfig,
    TemplateConfig,
)
from editdecay.editing.delta import EditDelta, FingerprintMismatchError
from editdecay.editing.mend import MendHypernet, train_mend
from editdecay.editing.targets import EditingError
from editdecay.models.registry import fingerprint, tiny_llama

FAILURES = ("raise", "nan")  # a solver that raises (CUDA on a singular system) or returns NaN (CPU)
QUICK_TARGETS = TargetConfig(steps=3)
QUICK_TEMPLATES = TemplateConfig(seed_words=("The",), length=2)


# ---------------------------------------------------------------------------- how each editor is run


def _fail_on_second_call(real: Callable, mode: str, calls: list) -> Callable:
    """`real`, except that its second call raises or returns NaN, after the first update is written."""

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) >= 2 and mode == "raise":
            raise torch.linalg.LinAlgError("injected failure: the input matrix is singular")
        out = real(*args, **kwargs)
        return out if len(calls) < 2 else torch.full_like(out, float("nan"))

    return failing


def _break_linalg_solve(monkeypatch, mode: str) -> list:
    """The locate-then-edit editors solve with torch.linalg.solve: once per layer (MEMIT, AlphaEdit)
    or once per request (ROME)."""
    calls: list = []
    monkeypatch.setattr(
        torch.linalg, "solve", _fail_on_second_call(torch.linalg.solve, mode, calls)
    )
    return calls


def _break_mend_network(monkeypatch, mode: str) -> list:
    """MEND's hypernetwork turns each edited weight's gradient into ΔW, one weight per call."""
    calls: list = []
    monkeypatch.setattr(
        MendHypernet, "delta", _fail_on_second_call(MendHypernet.delta, mode, calls)
    )
    return calls


@dataclass(frozen=True)
class EditorCase:
    """How the contract runs one editor: a quick config (from fixtures), whether it takes the shared
    tiny statistic, how to make its solve fail, and the error each failure must raise."""

    config: Callable[[Callable], object]  # (request.getfixturevalue) -> config
    break_solve: Callable[..., list]  # (monkeypatch, mode) -> the list of calls made
    errors: dict[str, tuple[type[Exception], str]]  # failure mode -> (exception, message pattern)
    uses_stats: bool = True


# The second solve is layer 2's (MEMIT, AlphaEdit) or the second request's (ROME): the error names it.
LAYER_2_ERRORS = {
    "raise": (EditingError, "non-finite update at layer 2: the solve failed"),
    "nan": (EditingError, "non-finite update at layer 2;"),
}
ROME_ERRORS = {
    "raise": (
        EditingError,
        r"non-finite ROME update for request counterfact:\S+: the solve failed",
    ),
    "nan": (EditingError, r"non-finite ROME update for request counterfact:\S+$"),
}

CASES: dict[str, EditorCase] = {
    "memit": EditorCase(
        lambda get: MemitConfig(
            layers=(1, 2),
            targets=QUICK_TARGETS,
            templates=QUICK_TEMPLATES,
            statistic=get("tiny_stat_spec"),
        ),
        _break_linalg_solve,
        LAYER_2_ERRORS,
    ),
    "alphaedit": EditorCase(
        lambda get: AlphaEditConfig(
            layers=(1, 2),
            targets=QUICK_TARGETS,
            templates=QUICK_TEMPLATES,
            statistic=get("tiny_stat_spec"),
            nullspace_threshold=0.05,
            l2=1.0,
        ),
        _break_linalg_solve,
        LAYER_2_ERRORS,
    ),
    "rome": EditorCase(
        lambda get: RomeConfig(
            layers=(1,),
            targets=QUICK_TARGETS,
            templates=QUICK_TEMPLATES,
            statistic=get("tiny_stat_spec"),
        ),
        _break_linalg_solve,
        ROME_ERRORS,
    ),
    "mend": EditorCase(
        lambda get: MendConfig.quick(layers=(1, 2, 3), artifact=str(get("mend_artifact"))),
        _break_mend_network,
        {
            "raise": (torch.linalg.LinAlgError, "injected failure"),  # the network's own error
            "nan": (EditingError, "non-finite"),
        },
        uses_stats=False,
    ),
}


@pytest.fixture(scope="module")
def mend_artifact(tiny_lm, tmp_path_factory):
    """A MEND editor for the tiny model after two quick training steps (the contract needs one, not a good one)."""
    editor = train_mend(tiny_lm, MendConfig.quick(layers=(1, 2, 3), steps=2, eval_every=2))
    return editor.save(tmp_path_factory.mktemp("mend") / "editor")


def _case(method: str) -> EditorCase:
    if method not in CASES:
        pytest.fail(
            f"editor {method!r} is registered but has no contract case: "
            "add an EditorCase for it to CASES in tests/editing/test_contract.py"
        )
    return CASES[method]


@dataclass
class Run:
    """One editor's contract run: how to call it again, its delta and the weights around the call."""

    method: str
    case: EditorCase
    call: Callable[[], EditDelta]
    delta: EditDelta
    before: dict[str, torch.Tensor]
    after: dict[str, torch.Tensor]


@pytest.fixture(scope="module", params=sorted(EDITORS))
def run(request, tiny_lm, cf_requests) -> Run:
    method = request.param
    case = _case(method)
    cfg = case.config(request.getfixturevalue)
    stats = request.getfixturevalue("tiny_stats") if case.uses_stats else None
    requests = cf_requests[:2]

    def call() -> EditDelta:
        return EDITORS[method].edit(tiny_lm, requests, cfg, stats=stats)

    before = _snapshot(tiny_lm.model)
    delta = call()
    return Run(method, case, call, delta, before, _snapshot(tiny_lm.model))


def _snapshot(model) -> dict[str, torch.Tensor]:
    """Every parameter and buffer, copied."""
    return {name: t.detach().clone() for name, t in model.state_dict().items()}


def _assert_weights(model, expected: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert state.keys() == expected.keys()
    changed = [name for name, t in state.items() if not torch.equal(t, expected[name])]
    assert not changed, f"weights changed: {changed[:5]}"


def _plus_delta(weights: dict[str, torch.Tensor], delta: EditDelta) -> dict[str, torch.Tensor]:
    out = dict(weights)
    for name, dw in delta.weights.items():
        w = weights[name]
        out[name] = w + dw.to(device=w.device, dtype=w.dtype)
    return out


# ---------------------------------------------------------------------------- the contract


def test_edit_leaves_every_weight_unchanged(run, tiny_lm):
    _assert_weights(tiny_lm.model, run.before)
    for name, t in run.before.items():
        assert torch.equal(run.after[name], t), name
    assert fingerprint(tiny_lm.model) == tiny_lm.fingerprint == run.delta.model_fingerprint


def test_delta_edits_existing_weights_with_finite_nonzero_updates(run, tiny_lm, cf_requests):
    delta = run.delta
    assert isinstance(delta, EditDelta) and delta.method == run.method
    assert delta.request_ids == [r.case_id for r in cf_requests[:2]]
    params = dict(tiny_lm.model.named_parameters())
    assert delta.weights and set(delta.weights) <= set(params)
    for name, dw in delta.weights.items():
        assert dw.shape == params[name].shape, name
        assert torch.isfinite(dw).all() and dw.abs().max() > 0, name


def test_apply_adds_delta_exactly_and_revert_restores_bit_for_bit(run, tiny_lm):
    model = tiny_lm.model
    handle = run.delta.apply(model)
    try:
        _assert_weights(model, _plus_delta(run.before, run.delta))
        assert fingerprint(model) != tiny_lm.fingerprint
    finally:
        handle.revert()
    _assert_weights(model, run.before)
    assert fingerprint(model) == tiny_lm.fingerprint


def test_context_manager_applies_and_reverts_bit_for_bit(run, tiny_lm):
    model = tiny_lm.model
    with run.delta.apply(model):
        _assert_weights(model, _plus_delta(run.before, run.delta))
    _assert_weights(model, run.before)
    with pytest.raises(KeyError, match="inside the block"):
        with run.delta.apply(model):
            raise KeyError("inside the block")
    _assert_weights(model, run.before)


@pytest.mark.parametrize("mode", FAILURES)
def test_failed_solve_raises_and_leaves_the_weights_intact(run, tiny_lm, monkeypatch, mode):
    error, pattern = run.case.errors[mode]
    calls = run.case.break_solve(monkeypatch, mode)
    with pytest.raises(error, match=pattern):
        run.call()
    assert len(calls) >= 2, "the failure was injected after the first update"
    _assert_weights(tiny_lm.model, run.before)


def test_save_load_round_trips_tensors_and_metadata(run, tmp_path):
    delta = run.delta
    loaded = EditDelta.load(delta.save(tmp_path / run.method))
    for field in ("weights", "state"):
        ours, theirs = getattr(delta, field), getattr(loaded, field)
        assert ours.keys() == theirs.keys(), field
        for name, t in ours.items():
            assert theirs[name].dtype == t.dtype and torch.equal(theirs[name], t.cpu()), name
    for field in (
        "method",
        "config",
        "request_ids",
        "model_fingerprint",
        "statistic_keys",
        "seeds",
        "info",
    ):
        assert getattr(loaded, field) == getattr(delta, field), field


@pytest.fixture(scope="module")
def other_models():
    """Tiny Llamas that are not the shared one: other weights (seed 1), and another MLP width."""
    return {
        "other seed": tiny_llama(seed=1)[0].eval(),
        "other shape": tiny_llama(mlp=96)[0].eval(),
    }


@pytest.mark.parametrize("which", ["other seed", "other shape"])
def test_fingerprint_check_refuses_another_model(run, other_models, which):
    model = other_models[which]
    before = _snapshot(model)
    pattern = re.escape(f"computed on model {run.delta.model_fingerprint}")
    with pytest.raises(FingerprintMismatchError, match=pattern + ".*force=True"):
        run.delta.apply(model)
    _assert_weights(model, before)
