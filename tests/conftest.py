"""Shared fixtures: the tiny random Llama, a few CounterFact requests, and a small statistic C.

Everything here runs on the 4-layer random model (hidden 64, MLP 128) with the SmolLM2 tokenizer,
never on a real checkpoint.
"""

from __future__ import annotations

import pytest
import torch

from editdecay.data.loaders import load_requests
from editdecay.editing.statistics import StatisticSpec, second_moments
from editdecay.models.registry import fingerprint, load_model

# The models here are tiny: one thread is faster than several, and far faster when another job
# competes for the cores (thread oversubscription makes small ops 10-30x slower).
torch.set_num_threads(1)

STAT_LAYERS = (1, 2, 3)


@pytest.fixture(scope="session")
def tiny_lm():
    """The randomly initialised 4-layer Llama (shared: tests that change weights must restore them)."""
    return load_model("tiny-llama")


@pytest.fixture(autouse=True)
def _tiny_lm_left_unchanged(request):
    """Fail a test that leaves the shared tiny model's weights changed."""
    yield
    if "tiny_lm" in request.fixturenames:
        lm = request.getfixturevalue("tiny_lm")
        assert fingerprint(lm.model) == lm.fingerprint, (
            "the test left the shared tiny model modified"
        )


@pytest.fixture(scope="session")
def cf_requests():
    """The first four valid CounterFact edit requests (each has a target_true, 1 paraphrase, 1 neighbour)."""
    reqs = load_requests("counterfact", n=4).requests
    assert len(reqs) == 4
    return reqs


@pytest.fixture(scope="session")
def tiny_stat_spec():
    return StatisticSpec(max_tokens=2000, window=128)


@pytest.fixture(scope="session")
def tiny_stats_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("stats")


@pytest.fixture(scope="session")
def tiny_stats(tiny_lm, tiny_stat_spec, tiny_stats_dir):
    """C = E[kk^T] for layers 1, 2, 3 of the tiny model over 2000 WikiText tokens (own cache dir)."""
    return second_moments(tiny_lm, list(STAT_LAYERS), tiny_stat_spec, cache_dir=tiny_stats_dir)
