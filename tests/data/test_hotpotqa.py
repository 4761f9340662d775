"""Bundled HotpotQA fine-tuning set, the fine-tuning data entry point, and subject removal on HotpotQA."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
from collections import Counter
from pathlib import Path

import pytest

import editdecay.data.instructions as mod
from editdecay.data.instructions import (
    HOTPOTQA_PATH,
    InstructionExample,
    alpaca_prompt,
    load_commonsense,
    load_finetune_data,
    load_hotpotqa,
    remove_edited_subjects,
    training_text,
)
from editdecay.data.requests import EditRequest

BUNDLED = HOTPOTQA_PATH.parent
SHARED_HQA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hotpotqa"
SHA256 = "05001dcdeb2b2b2243a88f23daaf8de9237494cd387e13bc25854d3e031101d3"
N_BRIDGE, N_COMPARISON = 5918, 1487
PREFIX = "Please answer the following question with a short answer, question: "


@pytest.fixture(scope="module")
def hqa():
    return load_hotpotqa()


def _raw_records():
    with gzip.open(HOTPOTQA_PATH, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def test_bundled_file_is_reproducible_gzip_of_the_upstream_file():
    raw = HOTPOTQA_PATH.read_bytes()
    assert raw[:2] == b"\x1f\x8b"
    assert raw[3] == 0, "no file name in the gzip header"
    assert raw[4:8] == b"\x00\x00\x00\x00", "gzip mtime must be 0"
    content = gzip.decompress(raw)
    assert len(content) == 1_179_017
    assert hashlib.sha256(content).hexdigest() == SHA256
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(content)
    assert buf.getvalue() == raw
    lic = (BUNDLED / "LICENSE.hotpotqa-ReAct").read_text()
    assert lic.startswith("MIT License") and "Shunyu Yao" in lic
    readme = (BUNDLED / "README.md").read_text()
    assert SHA256 in readme and "CC BY-SA 4.0" in readme and "hotpotqa_dev.json.gz" in readme


@pytest.mark.skipif(not SHARED_HQA.exists(), reason="shared data not available")
def test_bundled_matches_shared_copy():
    assert (
        gzip.decompress(HOTPOTQA_PATH.read_bytes())
        == (SHARED_HQA / "hotpot_dev_v1_simplified.json").read_bytes()
    )
    assert (BUNDLED / "LICENSE.hotpotqa-ReAct").read_bytes() == (
        SHARED_HQA / "LICENSE.ReAct"
    ).read_bytes()


def test_package_data_globs_cover_the_new_files():
    import tomllib
    from fnmatch import fnmatch

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["editdecay.data"]
    for name in ("hotpotqa_dev.json.gz", "LICENSE.hotpotqa-ReAct"):
        assert any(
            fnmatch(f"bundled/{name}", g) and "/" not in g.removeprefix("bundled/") for g in globs
        ), name


def test_counts_and_types(hqa):
    assert len(hqa) == N_BRIDGE + N_COMPARISON == 7405
    raw = _raw_records()
    assert Counter(r["type"] for r in raw) == {"bridge": N_BRIDGE, "comparison": N_COMPARISON}
    assert len(load_hotpotqa(types=("bridge",))) == N_BRIDGE
    assert len(load_hotpotqa(types="comparison")) == N_COMPARISON
    comp = load_hotpotqa(types=("comparison",))
    want = [r["question"].strip() for r in raw if r["type"] == "comparison"]
    assert [ex.instruction.removeprefix(PREFIX) for ex in comp] == want


def test_format_matches_commonsense_shape(hqa):
    raw = _raw_records()
    first = hqa[0]
    assert first == InstructionExample(
        instruction=PREFIX + "Were Scott Derrickson and Ed Wood of the same nationality?",
        input="",
        output="the correct answer is yes",
        answer="yes",
        task="hotpotqa",
    )
    assert training_text(hqa[1]) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\n"
        + PREFIX
        + "What government position was held by the woman who "
        "portrayed Corliss Archer in the film Kiss and Tell?\n\n### Response:\nthe correct answer is Chief of Protocol"
    )
    for ex, rec in zip(hqa, raw, strict=True):
        assert ex.task == "hotpotqa" and ex.input == ""
        assert ex.instruction == PREFIX + rec["question"].strip()
        assert ex.answer == rec["answer"].strip() and ex.answer
        assert ex.output == f"the correct answer is {ex.answer}"
    # same output convention as the commonsense tasks
    cs = load_commonsense("test", tasks=("boolq",), n_per_task=1)[0]
    assert cs.output.removesuffix(cs.answer) == hqa[0].output.removesuffix(hqa[0].answer)
    # questions with trailing spaces in the file are stripped
    assert any(r["question"] != r["question"].strip() for r in raw)
    assert not any(ex.instruction != ex.instruction.strip() for ex in hqa)
    assert "### Input" not in alpaca_prompt(hqa[0])


def test_seeded_subsample_is_deterministic(hqa):
    a = load_hotpotqa(n=50, seed=1)
    b = load_hotpotqa(n=50, seed=1)
    c = load_hotpotqa(n=50, seed=2)
    assert len(a) == 50 and a == b and a != c
    assert len({ex.instruction for ex in a}) == 50
    assert {ex.instruction for ex in a} <= {ex.instruction for ex in hqa}
    assert a != hqa[:50]  # a random sample, not the file's head
    # a larger sample with the same seed extends the smaller one
    assert load_hotpotqa(n=80, seed=1)[:50] == a
    assert load_hotpotqa(n=0) == []
    assert load_hotpotqa(n=10_000) == hqa
    comp = load_hotpotqa(n=20, seed=1, types=("comparison",))
    assert len(comp) == 20 and all(ex.answer for ex in comp)
    assert {ex.instruction for ex in comp} <= {
        ex.instruction for ex in load_hotpotqa(types="comparison")
    }


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown HotpotQA type.*known: bridge, comparison"):
        load_hotpotqa(types=("multihop",))
    with pytest.raises(ValueError, match="at least one"):
        load_hotpotqa(types=())
    with pytest.raises(ValueError, match="n must be >= 0"):
        load_hotpotqa(n=-1)


def test_invalid_records_are_skipped_counted_and_logged(monkeypatch, tmp_path, caplog):
    recs = [
        {"question": "Who wrote Hamlet?", "answer": "William Shakespeare", "type": "bridge"},
        {"question": "   ", "answer": "x", "type": "bridge"},  # 1 empty question
        {"question": "Q2?", "answer": "", "type": "bridge"},  # 2 empty answer
        {"question": "Q3?", "type": "comparison"},  # 3 no answer
        ["not", "a", "record"],  # 4 not an object
        {"question": "Q5?", "answer": 5, "type": "bridge"},  # 5 answer not a string
        {"question": "Are A and B both cities?", "answer": " yes ", "type": "comparison"},
        {"question": "Q7?", "answer": "y"},  # 7 no type
    ]
    p = tmp_path / "h.json.gz"
    p.write_bytes(gzip.compress(json.dumps(recs).encode()))
    monkeypatch.setattr(mod, "HOTPOTQA_PATH", p)
    with caplog.at_level(logging.WARNING, logger="editdecay.data.instructions"):
        got = load_hotpotqa()
    assert [(ex.instruction.removeprefix(PREFIX), ex.answer) for ex in got] == [
        ("Who wrote Hamlet?", "William Shakespeare"),
        ("Are A and B both cities?", "yes"),
    ]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    msg = warnings[0].getMessage()
    assert "skipped 6 invalid HotpotQA record(s)" in msg
    # record numbers count from 1 (the 0-based indices 1, 2, 4 before)
    assert (
        "record 2: 'question' is empty" in msg
        and "record 3: 'answer' is empty" in msg
        and "record 5: not an object" in msg
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="editdecay.data.instructions"):
        assert len(load_hotpotqa(types="bridge")) == 1
    # the bundled file itself has no invalid records
    monkeypatch.setattr(mod, "HOTPOTQA_PATH", HOTPOTQA_PATH)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="editdecay.data.instructions"):
        load_hotpotqa()
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


# --------------------------------------------------------------------------- load_finetune_data


def test_dispatch_commonsense():
    full = load_commonsense("train", seed=3)
    got = load_finetune_data("commonsense", n=40, seed=3)
    assert got == full[:40]
    assert len({ex.task for ex in got}) > 1  # a mixture, not one task
    assert load_finetune_data("commonsense", n=40, seed=3) == got
    assert load_finetune_data("commonsense", n=40, seed=4) != got
    assert len(load_finetune_data("commonsense")) == len(full) == 107_675


def test_dispatch_hotpotqa(hqa):
    assert load_finetune_data("hotpotqa") == hqa
    got = load_finetune_data("hotpotqa", n=25, seed=7)
    assert got == load_hotpotqa(n=25, seed=7)
    assert all(ex.task == "hotpotqa" for ex in got) and len(got) == 25


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_dispatch_user_file(tmp_path, suffix):
    recs = [{"instruction": f"Q{i}?", "output": f"a{i}"} for i in range(12)]
    p = tmp_path / f"mine{suffix}"
    p.write_text(json.dumps(recs) if suffix == ".json" else "\n".join(json.dumps(r) for r in recs))
    whole = load_finetune_data(str(p))
    assert [ex.instruction for ex in whole] == [f"Q{i}?" for i in range(12)]
    assert all(ex.task == "user" for ex in whole)
    assert load_finetune_data(p) == whole  # a Path works too
    a = load_finetune_data(str(p), n=5, seed=1)
    assert len(a) == 5 and a == load_finetune_data(str(p), n=5, seed=1)
    assert a != whole[:5] and a != load_finetune_data(str(p), n=5, seed=2)
    assert set(a) <= set(whole)
    assert load_finetune_data(str(p), n=100) == whole


def test_dispatch_unknown_source(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"unknown fine-tuning source 'alpaca'; expected one of 'commonsense', "
        r"'hotpotqa', 'commonsense:<task>', or a path",
    ):
        load_finetune_data("alpaca")
    with pytest.raises(ValueError, match=r"no such file.*'commonsense', 'hotpotqa'"):
        load_finetune_data(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="n must be >= 0"):
        load_finetune_data("hotpotqa", n=-2)


def test_dispatch_names_take_precedence_over_files(tmp_path, monkeypatch, hqa):
    (tmp_path / "hotpotqa").write_text(json.dumps([{"instruction": "x", "output": "y"}]))
    monkeypatch.chdir(tmp_path)
    assert load_finetune_data("hotpotqa", n=3) == load_hotpotqa(n=3)


# --------------------------------------------------------------------------- subject overlap


def test_remove_edited_subjects_on_hotpotqa(hqa):
    # "Scott Derrickson" occurs in a question, "Chief of Protocol" only as an answer
    subj_q = "Scott Derrickson"
    in_q = [i for i, ex in enumerate(hqa) if subj_q.lower() in ex.instruction.lower()]
    in_out = [i for i, ex in enumerate(hqa) if "chief of protocol" in ex.output.lower()]
    assert in_q and 0 in in_q
    assert 1 in in_out and "chief of protocol" not in hqa[1].instruction.lower()
    reqs = [EditRequest("r1", "{} was born in", subj_q, "Paris"), "chief of protocol"]
    kept, rep = remove_edited_subjects(hqa, reqs)
    assert rep.n_checked == len(hqa)
    removed = set(in_q) | set(in_out)
    assert rep.n_removed == len(removed) == len(hqa) - len(kept)
    assert rep.per_subject[subj_q] == len(in_q)
    assert rep.per_subject["chief of protocol"] == len(in_out)
    assert rep.removed_indices[:2] == [0, 1]
    assert hqa[0] not in kept and hqa[1] not in kept and hqa[2] in kept
    assert not any(subj_q.lower() in ex.instruction.lower() for ex in kept)
