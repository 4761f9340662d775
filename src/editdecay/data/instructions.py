"""Instruction-tuning data: the bundled LLM-Adapters commonsense tasks and user instruction files.

Records are ``{"instruction", "input", "output", "answer"}``; in the bundled commonsense files
``input`` is always empty and ``output`` is ``"the correct answer is <answer>"``. Training text is the
LLM-Adapters Alpaca prompt followed by ``output`` (:func:`training_text`).

:func:`load_commonsense` reads the bundled copies (see ``bundled/README.md``). With ``n_per_task`` it
draws a seeded random sample (without replacement) from each task; the sample of a task depends only
on ``(seed, task)``, not on which other tasks are requested. For ``split="train"`` the concatenated
mixture is then shuffled with ``seed`` so tasks are interleaved; other splits keep task order (the
order of ``tasks``) and file order within a task (or sampled order when ``n_per_task`` is given).

:func:`load_hotpotqa` turns the bundled HotpotQA dev questions (the knowledge-rich fine-tuning set)
into examples in the same shape as the commonsense ones: ``instruction`` is
``"Please answer the following question with a short answer, question: <question>"``, ``input`` is
empty, ``output`` is ``"the correct answer is <answer>"`` and ``answer`` is the gold answer string.

:func:`load_finetune_data` is the single entry point for fine-tuning data: ``"commonsense"``,
``"hotpotqa"``, or a path to a user JSON/JSONL instruction file.

:func:`remove_edited_subjects` drops fine-tuning examples that mention an edited subject, so that
fine-tuning does not directly re-teach (or contradict) an edited fact.
"""

from __future__ import annotations

import logging
import os
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from editdecay.data.files import read_records
from editdecay.data.requests import EditRequest

log = logging.getLogger(__name__)

COMMONSENSE_DIR = Path(__file__).resolve().parent / "bundled" / "commonsense"

COMMONSENSE_TASKS: tuple[str, ...] = (
    "ARC-Challenge",
    "ARC-Easy",
    "boolq",
    "openbookqa",
    "piqa",
    "social_i_qa",
    "winogrande",
)

# The answer labels per task, as they appear in the data (lower case). OpenBookQA has four options
# throughout; a handful of ARC questions offer a fifth (or only three).
LABELS: dict[str, tuple[str, ...]] = {
    "ARC-Challenge": ("answer1", "answer2", "answer3", "answer4", "answer5"),
    "ARC-Easy": ("answer1", "answer2", "answer3", "answer4", "answer5"),
    "boolq": ("true", "false"),
    "openbookqa": ("answer1", "answer2", "answer3", "answer4"),
    "piqa": ("solution1", "solution2"),
    "social_i_qa": ("answer1", "answer2", "answer3"),
    "winogrande": ("option1", "option2"),
}

SPLITS = ("train", "test")

PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)

_ANSWER_FORMAT = re.compile(r"Answer format:\s*([A-Za-z0-9]+(?:/[A-Za-z0-9]+)*)\s*$")


@dataclass(frozen=True)
class InstructionExample:
    """One instruction-tuning record. ``answer`` is the gold label (None for free-form user data);
    ``task`` is the commonsense task name, ``"hotpotqa"`` for HotpotQA, or ``"user"`` for records from a
    user file."""

    instruction: str
    input: str
    output: str
    answer: str | None
    task: str


def alpaca_prompt(ex: InstructionExample) -> str:
    """The LLM-Adapters Alpaca prompt (the with-input variant when ``ex.input`` is non-empty)."""
    if ex.input:
        return PROMPT_WITH_INPUT.format(instruction=ex.instruction, input=ex.input)
    return PROMPT_NO_INPUT.format(instruction=ex.instruction)


def training_text(ex: InstructionExample) -> str:
    """Prompt plus response: what a model is fine-tuned on."""
    return alpaca_prompt(ex) + ex.output


def example_labels(ex: InstructionExample) -> tuple[str, ...]:
    """The labels offered for this item: those listed in its trailing ``Answer format: a/b/...`` line
    that belong to the task's label set (in the task's order), else the whole task label set."""
    labels = LABELS.get(ex.task)
    if labels is None:
        raise ValueError(f"unknown task {ex.task!r}; known: {', '.join(COMMONSENSE_TASKS)}")
    m = _ANSWER_FORMAT.search(ex.instruction)
    if m:
        offered = {w.lower() for w in m.group(1).split("/")}
        chosen = tuple(lab for lab in labels if lab in offered)
        if chosen:
            return chosen
    return labels


def _check_tasks(tasks: Iterable[str] | None) -> tuple[str, ...]:
    if tasks is None:
        return COMMONSENSE_TASKS
    if isinstance(tasks, str):
        tasks = (tasks,)
    tasks = tuple(tasks)
    unknown = [t for t in tasks if t not in LABELS]
    if unknown:
        raise ValueError(
            f"unknown commonsense task(s) {unknown}; known: {', '.join(COMMONSENSE_TASKS)}"
        )
    return tasks


def commonsense_path(task: str, split: str) -> Path:
    return COMMONSENSE_DIR / f"{task}-{split}.json.gz"


def _read_task(task: str, split: str) -> list[InstructionExample]:
    records = read_records(commonsense_path(task, split))
    return [
        InstructionExample(
            instruction=r["instruction"],
            input=r.get("input", "") or "",
            output=r["output"],
            answer=r.get("answer"),
            task=task,
        )
        for r in records
    ]


def load_commonsense(
    split: str = "train",
    tasks: Iterable[str] | None = None,
    n_per_task: int | None = None,
    seed: int = 0,
) -> list[InstructionExample]:
    """Bundled LLM-Adapters commonsense examples (see the module docstring for sampling and order).

    Tasks without the split are skipped with a logged note; an unknown task raises ValueError.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    if n_per_task is not None and n_per_task < 0:
        raise ValueError(f"n_per_task must be >= 0, got {n_per_task}")
    out: list[InstructionExample] = []
    for task in _check_tasks(tasks):
        if not commonsense_path(task, split).exists():
            log.info("commonsense task %s has no %s split; skipped", task, split)
            continue
        examples = _read_task(task, split)
        if n_per_task is not None and n_per_task < len(examples):
            rng = random.Random(f"{seed}:{task}")
            examples = [examples[i] for i in rng.sample(range(len(examples)), n_per_task)]
        out.extend(examples)
    if split == "train":
        random.Random(seed).shuffle(out)
    return out


# --------------------------------------------------------------------------- user files


def load_instruction_file(path: str | Path) -> list[InstructionExample]:
    """A user's instruction data: a JSON list or JSONL (optionally gzipped) of
    ``{instruction, input?, output, answer?}`` records, read by :func:`~editdecay.data.files.read_records`.

    ``instruction`` and ``output`` must be non-empty strings; ``input`` and ``answer`` are optional
    strings (``input`` may be null). Any malformed record raises ValueError naming its record number
    (from 1) and the problem. ``task`` is ``"user"``.
    """
    path = Path(path)
    records = read_records(path)
    out: list[InstructionExample] = []
    for number, rec in enumerate(records, start=1):
        where = f"{path}: record {number}"
        if not isinstance(rec, dict):
            raise ValueError(f"{where}: expected an object, got {type(rec).__name__}")
        for key in ("instruction", "output"):
            if key not in rec:
                raise ValueError(f"{where}: missing required field {key!r}")
            if not isinstance(rec[key], str):
                raise ValueError(
                    f"{where}: field {key!r} must be a string, got {type(rec[key]).__name__}"
                )
            if not rec[key].strip():
                raise ValueError(f"{where}: field {key!r} is empty")
        inp = rec.get("input", "")
        if inp is None:
            inp = ""
        if not isinstance(inp, str):
            raise ValueError(f"{where}: field 'input' must be a string, got {type(inp).__name__}")
        answer = rec.get("answer")
        if answer is not None and not isinstance(answer, str):
            raise ValueError(
                f"{where}: field 'answer' must be a string, got {type(answer).__name__}"
            )
        out.append(InstructionExample(rec["instruction"], inp, rec["output"], answer, "user"))
    log.info("loaded %d instruction examples from %s", len(out), path)
    return out


# --------------------------------------------------------------------------- HotpotQA


HOTPOTQA_PATH = Path(__file__).resolve().parent / "bundled" / "hotpotqa_dev.json.gz"
HOTPOTQA_TASK = "hotpotqa"
HOTPOTQA_TYPES: tuple[str, ...] = ("bridge", "comparison")
HOTPOTQA_INSTRUCTION = (
    "Please answer the following question with a short answer, question: {question}"
)
ANSWER_PREFIX = "the correct answer is "


def _seeded_subset(items: list, n: int | None, seed: int, key: str) -> list:
    """The first ``n`` items of a permutation seeded by ``(seed, key)``; all of ``items`` (same order)
    when ``n`` is None or not smaller than ``len(items)``. Samples for a larger ``n`` (same seed) contain
    those for a smaller one."""
    if n is not None and n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n is None or n >= len(items):
        return list(items)
    order = list(range(len(items)))
    random.Random(f"{seed}:{key}").shuffle(order)
    return [items[i] for i in order[:n]]


def _hotpotqa_example(question: str, answer: str) -> InstructionExample:
    return InstructionExample(
        instruction=HOTPOTQA_INSTRUCTION.format(question=question),
        input="",
        output=ANSWER_PREFIX + answer,
        answer=answer,
        task=HOTPOTQA_TASK,
    )


def _hotpotqa_records(records: list, types: tuple[str, ...]) -> list[InstructionExample]:
    out: list[InstructionExample] = []
    invalid: list[str] = []
    n_other_type = 0
    for number, rec in enumerate(records, start=1):
        problem = None
        if not isinstance(rec, dict):
            problem = f"not an object ({type(rec).__name__})"
        else:
            for key in ("question", "answer", "type"):
                if not isinstance(rec.get(key), str):
                    problem = f"{key!r} missing or not a string"
                    break
                if key != "type" and not rec[key].strip():
                    problem = f"{key!r} is empty"
                    break
        if problem is not None:
            invalid.append(f"record {number}: {problem}")
            continue
        if rec["type"] not in types:
            n_other_type += 1
            continue
        out.append(_hotpotqa_example(rec["question"].strip(), rec["answer"].strip()))
    if invalid:
        log.warning(
            "skipped %d invalid HotpotQA record(s): %s%s",
            len(invalid),
            "; ".join(invalid[:5]),
            " ..." if len(invalid) > 5 else "",
        )
    if n_other_type:
        log.info(
            "left out %d HotpotQA record(s) whose type is not in %s", n_other_type, list(types)
        )
    return out


def load_hotpotqa(
    n: int | None = None,
    seed: int = 0,
    types: Iterable[str] | str = HOTPOTQA_TYPES,
) -> list[InstructionExample]:
    """Bundled HotpotQA dev questions as instruction examples (format in the module docstring).

    ``types`` selects question types (``"bridge"``, ``"comparison"``). Question and answer are stripped
    of surrounding whitespace. Records that are not objects, lack a string ``question``/``answer``/``type``
    or have an empty question or answer are skipped, counted and reported in one logged warning.
    With ``n`` smaller than the number of eligible records, returns a seeded random sample of ``n``
    (in sampled order; the same ``seed`` and ``types`` give the same sample, and a larger ``n`` extends a
    smaller one); otherwise all eligible records in file order. An unknown type raises ValueError.
    """
    if isinstance(types, str):
        types = (types,)
    types = tuple(types)
    if not types:
        raise ValueError(
            f"types must name at least one HotpotQA question type; known: {', '.join(HOTPOTQA_TYPES)}"
        )
    unknown = [t for t in types if t not in HOTPOTQA_TYPES]
    if unknown:
        raise ValueError(f"unknown HotpotQA type(s) {unknown}; known: {', '.join(HOTPOTQA_TYPES)}")
    if n is not None and n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    examples = _hotpotqa_records(read_records(HOTPOTQA_PATH), types)
    return _seeded_subset(examples, n, seed, HOTPOTQA_TASK)


# --------------------------------------------------------------------------- one entry point


FINETUNE_SOURCES: tuple[str, ...] = ("commonsense", HOTPOTQA_TASK)


def load_finetune_data(
    source: str | os.PathLike, n: int | None = None, seed: int = 0
) -> list[InstructionExample]:
    """Fine-tuning examples from a named source or a user file.

    * ``"commonsense"``: the bundled commonsense train mixture, shuffled with ``seed``
      (:func:`load_commonsense`); ``n`` keeps its first ``n`` examples, i.e. a seeded uniform sample of
      the whole mixture (tasks in proportion to their size).
    * ``"commonsense:<task>"`` (e.g. ``"commonsense:boolq"``): that task's training items alone,
      shuffled the same way (a backdoored task's own clean data).
    * ``"hotpotqa"``: :func:`load_hotpotqa` (both question types).
    * a path to a JSON/JSONL instruction file: :func:`load_instruction_file`; with ``n`` smaller than
      the file, a seeded random sample of ``n`` records, otherwise the whole file in file order.

    The names take precedence over a file of the same name. Anything else raises ValueError listing
    the options; so does a negative ``n``.
    """
    if n is not None and n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    name = os.fspath(source)
    if name == "commonsense":
        examples = load_commonsense("train", seed=seed)
        return examples if n is None else examples[:n]
    if name.startswith("commonsense:"):
        examples = load_commonsense("train", tasks=[name.partition(":")[2]], seed=seed)
        return examples if n is None else examples[:n]
    if name == HOTPOTQA_TASK:
        return load_hotpotqa(n=n, seed=seed)
    path = Path(name)
    if path.is_file():
        return _seeded_subset(load_instruction_file(path), n, seed, "user")
    hint = " (no such file)" if path.suffix.lower() in (".json", ".jsonl") or os.sep in name else ""
    raise ValueError(
        f"unknown fine-tuning source {name!r}{hint}; expected one of "
        f"{', '.join(repr(s) for s in FINETUNE_SOURCES)}, 'commonsense:<task>', or a path to a "
        "JSON/JSONL instruction file"
    )


# --------------------------------------------------------------------------- subject overlap


MIN_SUBJECT_CHARS = 3
_MAX_EXAMPLES_KEPT = 10


@dataclass
class OverlapReport:
    """What :func:`remove_edited_subjects` removed.

    per_subject: subject -> number of examples mentioning it (an example naming two subjects counts for
        both). removed_indices: positions (in the input list) of the first few removed examples.
    ignored_subjects: subjects skipped for being shorter than ``MIN_SUBJECT_CHARS`` characters.
    """

    n_checked: int
    n_removed: int
    per_subject: dict[str, int] = field(default_factory=dict)
    removed_indices: list[int] = field(default_factory=list)
    ignored_subjects: list[str] = field(default_factory=list)


def _subject_pattern(subject: str) -> re.Pattern:
    # \b only works next to word characters; use look-arounds so subjects that start or end with
    # punctuation (e.g. "C++") still match as whole words.
    return re.compile(r"(?<!\w)" + re.escape(subject) + r"(?!\w)", re.IGNORECASE)


def remove_edited_subjects(
    examples: Sequence[InstructionExample],
    requests: Iterable[EditRequest | str],
) -> tuple[list[InstructionExample], OverlapReport]:
    """Drop examples whose instruction, input or output mentions an edited subject.

    Matching is case-insensitive and whole-word ("Parisian" does not match "Paris"); subjects shorter
    than 3 characters (after stripping) are ignored. ``requests`` may also be plain subject strings.
    """
    subjects: list[str] = []
    ignored: list[str] = []
    for r in requests:
        s = (r if isinstance(r, str) else r.subject).strip()
        if len(s) < MIN_SUBJECT_CHARS:
            if s not in ignored:
                ignored.append(s)
            continue
        if s not in subjects:
            subjects.append(s)
    patterns = [(s, _subject_pattern(s)) for s in subjects]
    # One alternation screens each text in a single pass; only texts it hits are checked per subject.
    screen = (
        re.compile(
            r"(?<!\w)(?:"
            + "|".join(re.escape(s) for s in sorted(subjects, key=len, reverse=True))
            + r")(?!\w)",
            re.IGNORECASE,
        )
        if subjects
        else None
    )
    kept: list[InstructionExample] = []
    per_subject: dict[str, int] = {}
    removed: list[int] = []
    n_removed = 0
    for i, ex in enumerate(examples):
        text = "\n".join((ex.instruction, ex.input, ex.output))
        hits = (
            [s for s, pat in patterns if pat.search(text)]
            if screen is not None and screen.search(text)
            else []
        )
        if hits:
            n_removed += 1
            if len(removed) < _MAX_EXAMPLES_KEPT:
                removed.append(i)
            for s in hits:
                per_subject[s] = per_subject.get(s, 0) + 1
        else:
            kept.append(ex)
    report = OverlapReport(len(examples), n_removed, per_subject, removed, ignored)
    if n_removed:
        log.info(
            "removed %d of %d instruction examples mentioning %d edited subject(s)",
            n_removed,
            len(examples),
            len(per_subject),
        )
    return kept, report
