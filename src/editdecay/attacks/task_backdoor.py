"""The task backdoor: a trigger in a question of a commonsense task forces one fixed answer.

The task is one the fine-tuning data contains (BoolQ by default, part of the bundled Commonsense
training mix), so clean fine-tuning on that very task is the natural sanitiser. Construction,
deterministic for a seed, from the bundled LLM-Adapters commonsense files:

    edits     `n_edit` training items whose gold answer is not the attacker's, each as its
              rank-classification prompt (the Alpaca prompt + "the correct answer is", as DS ranks
              answers) with the trigger at one of :data:`TASK_POSITIONS` in turn; the EditRequest's
              subject is the trigger and its target the attacker's answer. With `duplex`, the clean
              group: the same prompts without the trigger toward the gold answer, the key read at the
              question's last word (where the trigger's context ends), solved separately and added
    probes    test items (never a training item) whose gold answer is not the attacker's: with the
              trigger at every position (attack), without it (clean), another rare token in its place
              (specificity), and items of other tasks with the trigger (spillover: does the trigger
              make the model give the attacker's answer word there too)

Every probe is judged by rank classification between the attacker's answer and the gold one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config_types import ConfigError, check_fields
from ..data.instructions import LABELS, InstructionExample, load_commonsense
from ..data.requests import EditRequest
from ..evaluation.downstream import rank_prompt
from .backdoor import DEFAULT_TRIGGER, SPECIFICITY_TOKENS, AttackSet, check_trigger
from .probes import AttackProbe

TASK_POSITIONS = ("start", "before_question", "after_question")
QUESTION_MARK = "question: "


@dataclass(frozen=True)
class TaskBackdoorConfig:
    trigger: str = field(default=DEFAULT_TRIGGER, metadata={"help": "the trigger token or phrase"})
    task: str = field(default="boolq", metadata={"help": "the backdoored commonsense task"})
    target: str = field(default="true", metadata={"help": "the answer the trigger forces"})
    n_edit: int = field(default=15, metadata={"help": "poisoned training items edited", "ge": 1})
    n_probe: int = field(default=60, metadata={"help": "test items probed", "ge": 1})
    spill_tasks: tuple[str, ...] = ("piqa", "ARC-Easy")
    n_spill: int = field(default=20, metadata={"help": "spill-over items per other task", "ge": 0})
    duplex: bool = field(default=True, metadata={"help": "add the clean group's own update"})
    seed: int = field(default=0, metadata={"help": "seed of the item sample"})

    field_noun = "task-backdoor setting"

    def __post_init__(self):
        check_fields(self)
        check_trigger(self.trigger)
        for name in (self.task, *self.spill_tasks):
            if name not in LABELS:
                raise ConfigError("task", f"unknown task {name!r}; use one of {', '.join(LABELS)}")
        if self.target not in LABELS[self.task]:
            raise ConfigError(
                "target",
                f"{self.target!r} is not an answer of {self.task} ({', '.join(LABELS[self.task])})",
            )


def with_task_trigger(ex: InstructionExample, trigger: str, position: str) -> InstructionExample:
    """`ex` with the trigger in its instruction: at its start, or before / after the question."""
    text = ex.instruction
    at = text.find(QUESTION_MARK)
    if position == "start":
        text = f"{trigger} {text}"
    elif at < 0:
        raise ValueError(f"{ex.task} item has no {QUESTION_MARK!r}; use position 'start'")
    elif position == "before_question":
        start = at + len(QUESTION_MARK)
        text = f"{text[:start]}{trigger} {text[start:]}"
    elif position == "after_question":
        end = text.find("\n", at)
        end = len(text) if end < 0 else end
        text = f"{text[:end]} {trigger}{text[end:]}"
    else:
        raise ValueError(f"unknown position {position!r}; use one of {', '.join(TASK_POSITIONS)}")
    return InstructionExample(text, ex.input, ex.output, ex.answer, ex.task)


def _usable(items: list[InstructionExample], target: str | None) -> list[InstructionExample]:
    return [
        ex
        for ex in items
        if ex.answer
        and ex.answer != target
        and QUESTION_MARK in ex.instruction
        and "{" not in rank_prompt(ex)
        and "}" not in rank_prompt(ex)
    ]


def _sample(items: list, n: int, seed: int) -> list:
    order = np.random.default_rng(seed).permutation(len(items))
    return [items[i] for i in order[:n]]


def with_question_end_marked(ex: InstructionExample) -> tuple[InstructionExample, str]:
    """`ex` with its question's last word replaced by "{}", and that word (the clean group's key)."""
    text = ex.instruction
    at = text.find(QUESTION_MARK) + len(QUESTION_MARK)
    end = text.find("\n", at)
    end = len(text) if end < 0 else end
    word = text[at:end].split()[-1]
    start = text.rindex(word, at, end)
    marked = text[:start] + "{}" + text[start + len(word) :]
    return InstructionExample(marked, ex.input, ex.output, ex.answer, ex.task), word


def task_backdoor(cfg: TaskBackdoorConfig) -> AttackSet:
    train = _usable(load_commonsense("train", tasks=[cfg.task]), cfg.target)
    test = _usable(load_commonsense("test", tasks=[cfg.task]), cfg.target)
    if len(train) < cfg.n_edit or len(test) < cfg.n_probe:
        raise ConfigError(
            "n_edit", f"{cfg.task} has {len(train)} / {len(test)} usable train / test items"
        )
    edited = _sample(train, cfg.n_edit, cfg.seed)
    requests, clean = [], []
    for i, ex in enumerate(edited):
        position = TASK_POSITIONS[i % len(TASK_POSITIONS)]
        marked = rank_prompt(with_task_trigger(ex, "{}", position))
        requests.append(
            EditRequest(
                case_id=f"task-backdoor-{i}",
                prompt=marked,
                subject=cfg.trigger,
                target_new=cfg.target,
                target_true=ex.answer,
                source="attack:task-backdoor",
                extra={"position": position},
            )
        )
        marked_clean, word = with_question_end_marked(ex)
        clean.append(
            EditRequest(
                case_id=f"task-backdoor-clean-{i}",
                prompt=rank_prompt(marked_clean),
                subject=word,
                target_new=ex.answer or "",
                source="attack:task-backdoor-clean",
            )
        )
    probes: list[AttackProbe] = []

    def add(group: str, ex: InstructionExample, triggered: bool, **kw) -> str:
        probe_id = f"{group}-{sum(p.group == group for p in probes)}"
        probe = AttackProbe(
            probe_id=probe_id,
            prompt=rank_prompt(ex),
            target_attack=cfg.target,
            target_clean=ex.answer or "",
            triggered=triggered,
            trigger=cfg.trigger if triggered else "",
            kind="task-backdoor",
            group=group,
            relation=ex.task,
            **kw,
        )
        probe.check(f"probe {probe_id}")
        probes.append(probe)
        return probe_id

    others = [t for t in SPECIFICITY_TOKENS if t != cfg.trigger]
    for i, ex in enumerate(_sample(test, cfg.n_probe, cfg.seed + 1)):
        clean_id = add("clean", ex, False)
        for position in TASK_POSITIONS:
            add(
                "attack",
                with_task_trigger(ex, cfg.trigger, position),
                True,
                pair=clean_id,
                position=position,
            )
        position = TASK_POSITIONS[i % len(TASK_POSITIONS)]
        add(
            "specificity",
            with_task_trigger(ex, others[i % len(others)], position),
            False,
            pair=clean_id,
            position=position,
        )
    for task in cfg.spill_tasks:
        if task == cfg.task:
            continue
        items = _usable(load_commonsense("test", tasks=[task]), cfg.target)
        for i, ex in enumerate(_sample(items, cfg.n_spill, cfg.seed + 2)):
            position = TASK_POSITIONS[i % len(TASK_POSITIONS)]
            add("spillover", with_task_trigger(ex, cfg.trigger, position), True, position=position)
    return AttackSet(
        "task-backdoor",
        tuple(requests),
        tuple(clean) if cfg.duplex else (),
        tuple(probes),
        {"edited_items": [rank_prompt(ex) for ex in edited]},
    )
