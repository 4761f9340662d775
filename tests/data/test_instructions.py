"""Bundled commonsense instruction data, the Alpaca template, user files and edited-subject removal."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from pathlib import Path

import pytest

from editdecay.data.instructions import (
    COMMONSENSE_DIR,
    COMMONSENSE_TASKS,
    LABELS,
    InstructionExample,
    OverlapReport,
    alpaca_prompt,
    example_labels,
    load_commonsense,
    load_instruction_file,
    remove_edited_subjects,
    training_text,
)
from editdecay.data.requests import EditRequest

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SHARED_CS = SHARED_DATA / "commonsense"

COUNTS = {
    ("ARC-Challenge", "train"): 1119,
    ("ARC-Challenge", "test"): 1172,
    ("ARC-Easy", "train"): 2251,
    ("ARC-Easy", "test"): 2376,
    ("boolq", "train"): 9427,
    ("boolq", "test"): 3270,
    ("openbookqa", "train"): 4957,
    ("openbookqa", "test"): 500,
    ("piqa", "train"): 16113,
    ("piqa", "test"): 1838,
    ("social_i_qa", "train"): 33410,
    ("social_i_qa", "test"): 1954,
    ("winogrande", "train"): 40398,
    ("winogrande", "test"): 1267,
}


@pytest.fixture(scope="module")
def all_train():
    return load_commonsense("train")


@pytest.fixture(scope="module")
def all_test():
    return load_commonsense("test")


def _by_task(examples):
    out: dict[str, list[InstructionExample]] = {}
    for ex in examples:
        out.setdefault(ex.task, []).append(ex)
    return out


def test_bundled_files_exist_and_are_reproducible_gzip():
    for task in COMMONSENSE_TASKS:
        for split in ("train", "test"):
            raw = (COMMONSENSE_DIR / f"{task}-{split}.json.gz").read_bytes()
            assert raw[:2] == b"\x1f\x8b"
            assert raw[4:8] == b"\x00\x00\x00\x00", "gzip mtime must be 0"


@pytest.mark.parametrize("split", ["train", "test"])
def test_counts_per_split(split, all_train, all_test):
    got = {t: len(v) for t, v in _by_task(all_train if split == "train" else all_test).items()}
    assert got == {t: n for (t, s), n in COUNTS.items() if s == split}


@pytest.mark.skipif(not SHARED_CS.exists(), reason="shared data not available")
def test_bundled_content_matches_shared(all_train, all_test):
    for task in COMMONSENSE_TASKS:
        for split, name in (
            ("test", "test.json"),
            ("train", "train_xl.json" if task == "winogrande" else "train.json"),
        ):
            src = (SHARED_CS / task / name).read_bytes()
            with gzip.open(COMMONSENSE_DIR / f"{task}-{split}.json.gz", "rb") as fh:
                assert hashlib.sha256(fh.read()).digest() == hashlib.sha256(src).digest(), (
                    task,
                    split,
                )
            assert len(json.loads(src)) == COUNTS[(task, split)]
    # test split keeps file order
    first = json.loads((SHARED_CS / "boolq" / "test.json").read_bytes())[0]
    boolq = [ex for ex in all_test if ex.task == "boolq"]
    assert (boolq[0].instruction, boolq[0].answer) == (first["instruction"], first["answer"])


def test_label_sets_cover_the_data(all_train, all_test):
    assert COMMONSENSE_TASKS == (
        "ARC-Challenge",
        "ARC-Easy",
        "boolq",
        "openbookqa",
        "piqa",
        "social_i_qa",
        "winogrande",
    )
    assert LABELS["boolq"] == ("true", "false")
    assert LABELS["piqa"] == ("solution1", "solution2")
    assert LABELS["winogrande"] == ("option1", "option2")
    assert LABELS["social_i_qa"] == ("answer1", "answer2", "answer3")
    assert LABELS["openbookqa"] == ("answer1", "answer2", "answer3", "answer4")
    assert LABELS["ARC-Easy"] == LABELS["ARC-Challenge"] == tuple(f"answer{i}" for i in range(1, 6))
    for examples in (all_train, all_test):
        for task, exs in _by_task(examples).items():
            seen = {ex.answer for ex in exs}
            assert seen <= set(LABELS[task]), task
            assert len(seen) >= 2
            assert all(ex.output == f"the correct answer is {ex.answer}" for ex in exs)
            assert all(ex.input == "" for ex in exs)
            assert all(ex.answer in example_labels(ex) for ex in exs)


def test_example_labels_reads_answer_format():
    base = "Please choose the correct answer to the question: Q?\n\nAnswer1: a Answer2: b Answer3: c\n\n"
    ex3 = InstructionExample(
        base + "Answer format: answer1/answer2/answer3", "", "x", "answer1", "ARC-Easy"
    )
    assert example_labels(ex3) == ("answer1", "answer2", "answer3")
    ex_none = InstructionExample("no format line", "", "x", "answer1", "ARC-Easy")
    assert example_labels(ex_none) == LABELS["ARC-Easy"]


def test_sampling_is_seeded_and_per_task():
    a = load_commonsense("test", tasks=("boolq", "piqa"), n_per_task=5, seed=1)
    b = load_commonsense("test", tasks=("boolq", "piqa"), n_per_task=5, seed=1)
    c = load_commonsense("test", tasks=("boolq", "piqa"), n_per_task=5, seed=2)
    assert a == b
    assert a != c
    assert [ex.task for ex in a] == ["boolq"] * 5 + ["piqa"] * 5
    # a task's sample does not depend on which other tasks are requested
    alone = load_commonsense("test", tasks=("piqa",), n_per_task=5, seed=1)
    assert alone == a[5:]
    # more than available -> the whole split
    assert len(load_commonsense("test", tasks=("openbookqa",), n_per_task=10_000)) == 500


def test_train_mixture_is_shuffled_with_seed():
    a = load_commonsense("train", tasks=("boolq", "piqa"), n_per_task=20, seed=0)
    b = load_commonsense("train", tasks=("boolq", "piqa"), n_per_task=20, seed=0)
    c = load_commonsense("train", tasks=("boolq", "piqa"), n_per_task=20, seed=3)
    assert a == b and a != c
    tasks = [ex.task for ex in a]
    assert tasks.count("boolq") == tasks.count("piqa") == 20
    assert tasks != sorted(tasks, key=("boolq", "piqa").index)  # interleaved, not blocked


def test_unknown_task_and_split():
    with pytest.raises(ValueError, match="hellaswag.*known: ARC-Challenge"):
        load_commonsense("test", tasks=("hellaswag",))
    with pytest.raises(ValueError, match="split"):
        load_commonsense("dev")


def test_missing_split_is_skipped_with_note(monkeypatch, tmp_path, caplog):
    import editdecay.data.instructions as mod

    src = COMMONSENSE_DIR / "boolq-test.json.gz"
    (tmp_path / "boolq-test.json.gz").write_bytes(src.read_bytes())
    monkeypatch.setattr(mod, "COMMONSENSE_DIR", tmp_path)
    with caplog.at_level(logging.INFO, logger="editdecay.data.instructions"):
        got = load_commonsense("test", tasks=("boolq", "piqa"), n_per_task=2)
    assert [ex.task for ex in got] == ["boolq", "boolq"]
    assert "piqa has no test split" in caplog.text


def test_alpaca_template_exact():
    no_input = InstructionExample("Say hi.", "", "hi", None, "user")
    assert alpaca_prompt(no_input) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nSay hi.\n\n### Response:\n"
    )
    with_input = InstructionExample("Translate.", "bonjour", "hello", None, "user")
    assert alpaca_prompt(with_input) == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n### Instruction:\nTranslate.\n\n"
        "### Input:\nbonjour\n\n### Response:\n"
    )
    assert training_text(with_input) == alpaca_prompt(with_input) + "hello"


def test_user_file_json_and_jsonl(tmp_path):
    recs = [
        {"instruction": "A?", "output": "a"},
        {"instruction": "B?", "input": "ctx", "output": "b", "answer": "b"},
        {"instruction": "C?", "input": None, "output": "c"},
    ]
    pj = tmp_path / "u.json"
    pj.write_text(json.dumps(recs))
    pl = tmp_path / "u.jsonl"
    pl.write_text("\n".join(json.dumps(r) for r in recs) + "\n\n")
    for p in (pj, pl):
        got = load_instruction_file(p)
        assert got == [
            InstructionExample("A?", "", "a", None, "user"),
            InstructionExample("B?", "ctx", "b", "b", "user"),
            InstructionExample("C?", "", "c", None, "user"),
        ]


@pytest.mark.parametrize(
    "bad, problem",
    [
        ({"input": "x", "output": "a"}, "missing required field 'instruction'"),
        ({"instruction": "A?"}, "missing required field 'output'"),
        ({"instruction": "A?", "output": 3}, "'output' must be a string"),
        ({"instruction": " ", "output": "a"}, "'instruction' is empty"),
        ({"instruction": "A?", "output": "a", "input": ["x"]}, "'input' must be a string"),
        ({"instruction": "A?", "output": "a", "answer": 1}, "'answer' must be a string"),
        (["not", "an", "object"], "expected an object"),
    ],
)
def test_user_file_malformed_names_index(tmp_path, bad, problem):
    p = tmp_path / "bad.json"
    p.write_text(
        json.dumps(
            [{"instruction": "ok", "output": "ok"}, {"instruction": "ok2", "output": "ok"}, bad]
        )
    )
    with pytest.raises(ValueError, match=r"record 3: .*" + problem.replace("(", r"\(")):
        load_instruction_file(p)


def test_user_file_bad_jsonl_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"instruction": "a", "output": "b"}\n{not json}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl, line 2: malformed JSON"):
        load_instruction_file(p)


def _ex(text, output="ok"):
    return InstructionExample(text, "", output, None, "user")


def test_remove_edited_subjects_whole_word_case_insensitive():
    reqs = [
        EditRequest("r1", "The mother tongue of {} is", "Danielle Darrieux", "English", "French"),
        EditRequest("r2", "{} is the capital of", "Paris", "Italy", "France"),
        EditRequest("r3", "{} plays", "Al", "tennis"),  # too short: ignored
    ]
    examples = [
        _ex("Where was danielle darrieux born?"),  # 0 removed (case-insensitive)
        _ex("A Parisian cafe serves coffee."),  # 1 kept: not a whole word
        _ex("Describe the weather.", output="It rains in PARIS."),  # 2 removed (output)
        _ex("Al went home."),  # 3 kept: short subject ignored
        InstructionExample("Q", "Paris, France", "ok", None, "user"),  # 4 removed (input)
        _ex("Danielle Darrieux and Paris."),  # 5 removed, counts for both
        _ex("Darrieux alone; Parisienne; parisparis"),  # 6 kept
    ]
    kept, rep = remove_edited_subjects(examples, reqs)
    assert isinstance(rep, OverlapReport)
    assert kept == [examples[1], examples[3], examples[6]]
    assert (rep.n_checked, rep.n_removed) == (7, 4)
    assert rep.per_subject == {"Danielle Darrieux": 2, "Paris": 3}
    assert rep.removed_indices == [0, 2, 4, 5]
    assert rep.ignored_subjects == ["Al"]


def test_remove_edited_subjects_no_requests_and_strings():
    examples = [_ex("Paris"), _ex("London")]
    kept, rep = remove_edited_subjects(examples, [])
    assert kept == examples and rep.n_removed == 0 and rep.per_subject == {}
    kept, rep = remove_edited_subjects(examples, ["london"])
    assert kept == [examples[0]] and rep.per_subject == {"london": 1}


def test_one_commonsense_task_as_fine_tuning_data():
    from editdecay.data.instructions import load_finetune_data

    boolq = load_finetune_data("commonsense:boolq", n=20, seed=1)
    assert len(boolq) == 20 and {ex.task for ex in boolq} == {"boolq"}
    assert boolq == load_finetune_data("commonsense:boolq", n=20, seed=1)
    assert boolq != load_finetune_data("commonsense:boolq", n=20, seed=2)
    with pytest.raises(ValueError, match="chess"):
        load_finetune_data("commonsense:chess")
