"""Fine-tuning: layer selection, which parameters train, loss goes down, identical runs are identical."""

from __future__ import annotations

import copy

import pytest
import torch

from editdecay.data.instructions import load_commonsense
from editdecay.finetuning.tuner import FinetuneConfig, finetune, select_layers
from editdecay.models.registry import LoadedModel


def test_select_layers():
    assert select_layers("all", 4) == [0, 1, 2, 3]
    assert select_layers("edited", 6, (2, 3)) == [2, 3]
    assert select_layers("non-edited", 6, (2, 3)) == [0, 1, 4, 5]
    assert select_layers([3, 1, 1], 4) == [1, 3]
    with pytest.raises(ValueError, match="out of range"):
        select_layers([5], 4)
    with pytest.raises(ValueError, match="needs the edited layers"):
        select_layers("edited", 4)
    with pytest.raises(ValueError, match="unknown layer selection"):
        select_layers("middle", 4)


@pytest.fixture()
def fresh_lm(tiny_lm):
    model = copy.deepcopy(tiny_lm.model)
    return LoadedModel(tiny_lm.name, model, tiny_lm.tokenizer, tiny_lm.adapter, tiny_lm.fingerprint)


@pytest.fixture(scope="module")
def examples():
    return load_commonsense("train", tasks=("boolq", "piqa"), n_per_task=8, seed=0)


def _cfg(method, **kw):
    settings = {
        "r": 4,
        "alpha": 8,
        "epochs": 2,
        "max_steps": 6,
        "batch_size": 4,
        "micro_batch_size": 2,
        "cutoff_len": 96,
        "warmup_steps": 1,
        "lr": 1e-2 if method != "full" else 1e-3,
    }
    return FinetuneConfig(method=method, **{**settings, **kw})


@pytest.mark.parametrize("method", ["lora", "dora", "full"])
def test_loss_decreases_and_only_chosen_layers_train(method, fresh_lm, examples):
    before = {n: p.detach().clone() for n, p in fresh_lm.model.named_parameters()}
    res = finetune(fresh_lm, examples, _cfg(method, layers="edited"), edited_layers=(1, 2))
    assert res.steps == 6 and len(res.losses) == 6 and res.tokens > 0
    assert sum(res.losses[-2:]) < sum(res.losses[:2])
    assert res.layers == [1, 2]
    trained = {n for n, p in res.model.named_parameters() if p.requires_grad}
    assert trained and all(".layers.1." in n or ".layers.2." in n for n in trained)
    if method == "full":
        changed = {n for n, p in res.model.named_parameters() if not torch.equal(p, before[n])}
        assert changed and all(".layers.1." in n or ".layers.2." in n for n in changed)
    else:
        names = [n for n, _ in res.model.named_parameters() if "lora_" in n]
        assert names and all(".layers.1." in n or ".layers.2." in n for n in names)
        assert any("lora_magnitude" in n for n in names) == (method == "dora")


def test_same_seed_same_result_and_checkpoints(tiny_lm, examples):
    outs, seen = [], []
    for _ in range(2):
        lm = LoadedModel(
            tiny_lm.name,
            copy.deepcopy(tiny_lm.model),
            tiny_lm.tokenizer,
            tiny_lm.adapter,
            tiny_lm.fingerprint,
        )
        res = finetune(
            lm,
            examples,
            _cfg("lora", checkpoint_steps=(2, 4)),
            on_checkpoint=lambda step, m: seen.append(step),
        )
        outs.append(res.losses)
    assert outs[0] == outs[1]
    assert seen == [2, 4, 2, 4]


@pytest.mark.parametrize("method", ["lora", "full"])
def test_bf16_autocast_tracks_fp32(method, tiny_lm, examples):
    """bf16 autocast (the paper scale's setting) trains the same fp32 weights; its losses follow the fp32
    run's to bf16 precision, and the weights stay fp32."""
    runs = {}
    for precision in ("fp32", "bf16"):
        lm = LoadedModel(
            tiny_lm.name,
            copy.deepcopy(tiny_lm.model),
            tiny_lm.tokenizer,
            tiny_lm.adapter,
            tiny_lm.fingerprint,
        )
        runs[precision] = finetune(lm, examples, _cfg(method, precision=precision))
    fp32, bf16 = runs["fp32"], runs["bf16"]
    assert bf16.steps == fp32.steps == 6
    assert bf16.losses != fp32.losses  # autocast really ran the matmuls in bf16
    torch.testing.assert_close(
        torch.tensor(bf16.losses), torch.tensor(fp32.losses), rtol=0.02, atol=0.02
    )
    assert sum(bf16.losses[-2:]) < sum(bf16.losses[:2])
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())


def test_unknown_precision(fresh_lm, examples):
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        finetune(fresh_lm, examples, _cfg("lora", precision="fp16"))


def test_unknown_method(fresh_lm, examples):
    with pytest.raises(ValueError, match="unknown fine-tuning method"):
        finetune(fresh_lm, examples, _cfg("prefix"))


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("method", ["lora", "full"])
def test_interrupted_run_resumes_from_snapshot_bit_identical(method, tiny_lm, examples, tmp_path):
    def fresh():
        return LoadedModel(
            tiny_lm.name,
            copy.deepcopy(tiny_lm.model),
            tiny_lm.tokenizer,
            tiny_lm.adapter,
            tiny_lm.fingerprint,
        )

    cfg = _cfg(method, checkpoint_steps=(5,))
    whole = finetune(fresh(), examples, cfg)
    expected = {n: p.detach().clone() for n, p in whole.model.named_parameters()}

    snap = tmp_path / "snapshot"

    def die(step, model):
        raise _Interrupt

    with pytest.raises(_Interrupt):
        finetune(fresh(), examples, cfg, on_checkpoint=die, snapshot=snap, snapshot_every=2)
    assert (snap / "state.json").is_file()
    assert [p.suffix for p in snap.iterdir()] != [".pt"]
    resumed = finetune(fresh(), examples, cfg, snapshot=snap, snapshot_every=2)
    assert not snap.exists()
    assert resumed.steps == whole.steps and resumed.losses == whole.losses
    got = dict(resumed.model.named_parameters())
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[n], got[n]) for n in expected)


def test_snapshot_of_another_run_is_refused(tiny_lm, examples, tmp_path):
    snap = tmp_path / "snapshot"
    model = LoadedModel(
        tiny_lm.name,
        copy.deepcopy(tiny_lm.model),
        tiny_lm.tokenizer,
        tiny_lm.adapter,
        tiny_lm.fingerprint,
    )
    with pytest.raises(_Interrupt):
        finetune(
            model,
            examples,
            _cfg("lora", checkpoint_steps=(3,)),
            on_checkpoint=lambda s, m: (_ for _ in ()).throw(_Interrupt()),
            snapshot=snap,
            snapshot_every=2,
        )
    model = LoadedModel(
        tiny_lm.name,
        copy.deepcopy(tiny_lm.model),
        tiny_lm.tokenizer,
        tiny_lm.adapter,
        tiny_lm.fingerprint,
    )
    with pytest.raises(ValueError, match="different fine-tuning run"):
        finetune(model, examples, _cfg("lora", seed=1), snapshot=snap, snapshot_every=2)


@pytest.mark.parametrize("method", ["lora", "dora", "full"])
def test_saved_trainable_state_rebuilds_the_tuned_model(method, tiny_lm, examples):
    from editdecay.finetuning.tuner import load_finetuned, trainable_state

    def fresh():
        return LoadedModel(
            tiny_lm.name,
            copy.deepcopy(tiny_lm.model),
            tiny_lm.tokenizer,
            tiny_lm.adapter,
            tiny_lm.fingerprint,
        )

    cfg = _cfg(method, layers=(1, 3))
    res = finetune(fresh(), examples, cfg)
    ids = torch.tensor([[5, 17, 230, 9, 41, 7]], device=tiny_lm.model.device)
    with torch.no_grad():
        expected = res.model(input_ids=ids).logits
    rebuilt = load_finetuned(fresh(), cfg, res.layers, trainable_state(res.model))
    assert type(rebuilt) is type(tiny_lm.model)  # adapters merged away
    assert not any(p.requires_grad for p in rebuilt.parameters())
    with torch.no_grad():
        got = rebuilt(input_ids=ids).logits
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, tiny_lm.model(input_ids=ids).logits, atol=1e-3)  # it did train
    with pytest.raises(ValueError, match="unknown parameters"):
        load_finetuned(fresh(), cfg, res.layers, {"nope.weight": torch.zeros(1)})


def test_learning_rate_schedule_warms_up_then_decays_and_never_exceeds_one():
    from editdecay.finetuning.tuner import lr_multiplier

    ramp = [lr_multiplier(s, 10, 4) for s in range(10)]
    assert (
        ramp[:4] == [0.25, 0.5, 0.75, 1.0] and ramp[4] == 1.0 and ramp[-1] == pytest.approx(1 / 6)
    )
    assert all(b <= a for a, b in zip(ramp[3:], ramp[4:]))
    short = [lr_multiplier(s, 5, 100) for s in range(5)]  # shorter than the warm-up
    assert max(short) <= 1.0 and short == sorted(short)


# --------------------------------------------------------------------------- snapshots: safetensors + JSON


def _fresh(tiny_lm):
    return LoadedModel(
        tiny_lm.name,
        copy.deepcopy(tiny_lm.model),
        tiny_lm.tokenizer,
        tiny_lm.adapter,
        tiny_lm.fingerprint,
    )


def _training_state(model, seed: int):
    """A model with an AdamW optimiser, LambdaLR schedule and data generator, after `seed`-driven steps."""
    from editdecay.finetuning.tuner import lr_multiplier

    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_multiplier(s, 10, 2))
    gen = torch.Generator().manual_seed(seed)
    for _ in range(seed):
        opt.zero_grad()
        sum((p * torch.randn(p.shape, generator=gen)).sum() for p in trainable).backward()
        opt.step()
        sched.step()
    return opt, sched, gen


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_equal, a, b))
    return a == b


@pytest.mark.parametrize("method", ["lora", "full"])
def test_snapshot_round_trips_every_state_bit_for_bit(method, tiny_lm, tmp_path):
    import random

    import numpy as np

    from editdecay.finetuning.snapshot import load_snapshot as _load_snapshot
    from editdecay.finetuning.snapshot import restore as _restore
    from editdecay.finetuning.snapshot import save_snapshot as _save_snapshot
    from editdecay.finetuning.tuner import _prepare

    cfg = _cfg(method, layers=(1, 2))
    model = _prepare(_fresh(tiny_lm), cfg, [1, 2])
    opt, sched, gen = _training_state(model, seed=3)
    torch.manual_seed(11), random.seed(12), np.random.seed(13)
    np.random.standard_normal()  # a cached Gaussian in numpy's state
    expected = {
        "weights": {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad},
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "generator": gen.get_state(),
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    progress = ([0.5, 0.25, float(1 / 3)], 1234, 3, [7, 1, 4], 2.5)
    _save_snapshot(tmp_path / "snap", model, opt, sched, gen, cfg, 16, *progress)
    files = sorted(p.name for p in (tmp_path / "snap").iterdir())
    assert len(files) == 2 and files[0] == "state.json"
    assert files[1].startswith("tensors-") and files[1].endswith(".safetensors")

    torch.manual_seed(0), random.seed(0), np.random.seed(0)  # scramble every generator
    model2 = _prepare(_fresh(tiny_lm), cfg, [1, 2])
    opt2, sched2, gen2 = _training_state(model2, seed=1)
    state = _load_snapshot(tmp_path / "snap", cfg, 16)
    assert (
        "cuda" not in state["rng"]
    )  # a CPU run has no CUDA generator to save, and restores without
    _restore(model2, opt2, sched2, gen2, state)
    got = {
        "weights": {n: p.detach() for n, p in model2.named_parameters() if p.requires_grad},
        "optimizer": opt2.state_dict(),
        "scheduler": sched2.state_dict(),
        "generator": gen2.get_state(),
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    for key in ("weights", "optimizer", "scheduler", "generator", "torch", "python"):
        assert _equal(got[key], expected[key]), key
    assert got["numpy"][0] == expected["numpy"][0]
    assert np.array_equal(got["numpy"][1], expected["numpy"][1])
    assert got["numpy"][2:] == expected["numpy"][2:]
    assert (state["losses"], state["tokens"], state["step"]) == (progress[0], 1234, 3)
    assert (state["epoch_order"], state["elapsed"]) == ([7, 1, 4], 2.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_snapshot_saves_and_restores_the_cuda_generator(tiny_lm, tmp_path):
    from editdecay.finetuning.snapshot import load_snapshot as _load_snapshot
    from editdecay.finetuning.snapshot import restore as _restore
    from editdecay.finetuning.snapshot import save_snapshot as _save_snapshot
    from editdecay.finetuning.tuner import _prepare

    cfg = _cfg("lora", layers=(1,))
    lm = _fresh(tiny_lm)
    lm.model.to("cuda")
    model = _prepare(lm, cfg, [1])
    opt, sched, gen = _training_state(model, seed=2)
    torch.cuda.manual_seed(5)
    expected = torch.cuda.get_rng_state("cuda")
    _save_snapshot(tmp_path / "snap", model, opt, sched, gen, cfg, 16, [], 0, 2, [], 0.0)
    torch.cuda.manual_seed(6)
    state = _load_snapshot(tmp_path / "snap", cfg, 16)
    _restore(model, opt, sched, gen, state)
    assert torch.equal(torch.cuda.get_rng_state("cuda"), expected)


class _RunsCode:
    """Unpickling this creates `marker`: a stand-in for what an untrusted snapshot.pt could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return pathlib.Path.touch, (pathlib.Path(self.marker),)


@pytest.mark.parametrize("where", ["beside", "at"])
def test_an_old_snapshot_pt_is_ignored_with_a_warning(where, tiny_lm, examples, tmp_path, caplog):
    import pickle

    marker = tmp_path / "code-ran"
    snap = tmp_path / ("snapshot" if where == "beside" else "snapshot.pt")
    old = tmp_path / "snapshot.pt"
    old.write_bytes(pickle.dumps({"config": _RunsCode(marker), "step": 4}))
    cfg = _cfg("lora")
    whole = finetune(_fresh(tiny_lm), examples, cfg)
    with caplog.at_level("WARNING"):
        res = finetune(_fresh(tiny_lm), examples, cfg, snapshot=snap, snapshot_every=2)
    assert "ignoring and removing" in caplog.text and "snapshot.pt" in caplog.text
    assert not marker.exists() and not old.exists() and not snap.exists()
    assert res.steps == whole.steps and res.losses == whole.losses  # it started over


def test_a_corrupt_snapshot_is_ignored_and_training_starts_over(
    tiny_lm, examples, tmp_path, caplog
):
    cfg = _cfg("lora", checkpoint_steps=(5,))
    whole = finetune(_fresh(tiny_lm), examples, cfg)
    snap = tmp_path / "snapshot"
    with pytest.raises(_Interrupt):
        finetune(
            _fresh(tiny_lm),
            examples,
            cfg,
            on_checkpoint=lambda s, m: (_ for _ in ()).throw(_Interrupt()),
            snapshot=snap,
            snapshot_every=2,
        )
    (tensors,) = snap.glob("tensors-*.safetensors")
    tensors.write_bytes(tensors.read_bytes()[:-16])
    with caplog.at_level("WARNING"):
        res = finetune(_fresh(tiny_lm), examples, cfg, snapshot=snap, snapshot_every=2)
    assert "checksum mismatch" in caplog.text and "starting over" in caplog.text
    assert "resuming" not in caplog.text
    assert res.losses == whole.losses


# --------------------------------------------------------------------------- recipe, validation, seeds


def test_each_method_has_the_papers_recipe():
    full = FinetuneConfig.recipe_for("full")
    assert (full["cutoff_len"], full["warmup_ratio"], full["weight_decay"], full["lr"]) == (
        1024,
        0.1,
        0.01,
        5e-6,
    )
    for method in ("lora", "dora"):
        r = FinetuneConfig.recipe_for(method)
        assert (r["cutoff_len"], r["warmup_steps"], r["weight_decay"], r["lr"]) == (
            256,
            100,
            0.0,
            2e-4,
        )
        assert (r["validation_examples"], r["validation_every"], r["select_best"]) == (
            120,
            80,
            True,
        )
    cfg = FinetuneConfig(method="full", **full)
    assert cfg.learning_rate == 5e-6 and cfg.warmup_for(95) == 10


def test_new_fields_stay_out_of_the_hashed_dict_at_their_defaults():
    d = FinetuneConfig().to_dict()
    assert not {"data_seed", "validation_examples", "select_best", "warmup_ratio"} & set(d)
    assert FinetuneConfig(data_seed=3).to_dict()["data_seed"] == 3
    with pytest.raises(ValueError, match="select_best"):
        FinetuneConfig(select_best=True)


def test_the_validation_split_is_disjoint_deterministic_and_follows_the_data_seed(examples):
    from editdecay.finetuning.tuner import split_validation

    train, val = split_validation(examples, 4, seed=0)
    assert len(val) == 4 and len(train) == len(examples) - 4
    assert not {id(e) for e in train} & {id(e) for e in val}
    assert split_validation(examples, 4, seed=0) == (train, val)
    assert split_validation(examples, 4, seed=1)[1] != val


def test_best_checkpoint_selection_keeps_the_lowest_validation_loss(tiny_lm, examples):
    from editdecay.finetuning.tuner import trainable_state

    seen = {}
    cfg = _cfg(
        "lora",
        max_steps=4,
        lr=0.3,
        validation_examples=4,
        validation_every=1,
        select_best=True,
        checkpoint_steps=(1, 2, 3),
    )
    res = finetune(
        _fresh(tiny_lm),
        examples,
        cfg,
        on_checkpoint=lambda s, m: seen.__setitem__(s, trainable_state(m)),
    )
    assert [s for s, _ in res.validation] == [1, 2, 3, 4]
    best = min(res.validation, key=lambda v: v[1])[0]
    assert res.best_step == best
    final = trainable_state(res.model)
    if best in seen:
        assert all(torch.equal(final[n], seen[best][n]) for n in final)


def test_data_seed_moves_the_split_but_not_the_order_and_init_and_vice_versa(tiny_lm, examples):
    from editdecay.finetuning.tuner import split_validation

    base = _cfg("lora", max_steps=2, validation_examples=4)
    other_data = _cfg("lora", max_steps=2, validation_examples=4, data_seed=5)
    assert split_validation(examples, 4, base.split_seed) != split_validation(
        examples, 4, other_data.split_seed
    )
    other_seed = _cfg("lora", max_steps=2, validation_examples=4, seed=7, data_seed=0)
    assert split_validation(examples, 4, other_seed.split_seed) == split_validation(
        examples, 4, base.split_seed
    )  # the same data ...
    a = finetune(_fresh(tiny_lm), examples, base)
    b = finetune(_fresh(tiny_lm), examples, other_seed)
    assert a.losses != b.losses  # ... another order and initialisation
