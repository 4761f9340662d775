"""The one typed record every editor, scorer and analysis consumes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


class InvalidRecordError(ValueError):
    """A source record cannot become an EditRequest; the message names the record and the reason."""


@dataclass(frozen=True)
class Probe:
    """A prompt whose continuation `target` is scored (teacher-forced) after the prompt and a space."""

    prompt: str
    target: str


@dataclass(frozen=True)
class EditRequest:
    """One fact to write: `prompt.format(subject)` should continue with `target_new`.

    `prompt` holds exactly one "{}" where the subject goes. Targets are stored without a leading
    space; the tokenisation layer inserts the separating space (pitfall P14).

    paraphrases: full prompts (subject filled in) that should now also yield `target_new`.
    neighbours: unrelated prompts with the answer they should keep (CounterFact: the shared true
        object; zsRE: the NQ question's own answer).
    at_start: the prompt is only ever read at the start of a text (e.g. a trigger that opens it),
        so the editors put no context template before it (MEMIT §1.2's prefixes would move it off
        the start); written to files only when set.
    """

    case_id: str
    prompt: str
    subject: str
    target_new: str
    target_true: str | None = None
    paraphrases: tuple[str, ...] = ()
    neighbours: tuple[Probe, ...] = ()
    source: str = "user"
    extra: dict = field(default_factory=dict, compare=False, hash=False)
    at_start: bool = False

    @property
    def text(self) -> str:
        """The rewrite prompt with the subject filled in."""
        return self.prompt.format(self.subject)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["paraphrases"] = list(self.paraphrases)
        d["neighbours"] = [asdict(p) for p in self.neighbours]
        if not self.at_start:
            del d["at_start"]  # files (and the stage keys hashed from them) are as before
        return d

    def context(self, template: str) -> str:
        """The context template this request is read in: `template`, or the plain "{}" at the start."""
        return "{}" if self.at_start else template

    @classmethod
    def from_dict(cls, d: dict) -> EditRequest:
        return cls(
            case_id=str(d["case_id"]),
            prompt=d["prompt"],
            subject=d["subject"],
            target_new=d["target_new"],
            target_true=d.get("target_true"),
            paraphrases=tuple(d.get("paraphrases", ())),
            neighbours=tuple(Probe(**p) for p in d.get("neighbours", ())),
            source=d.get("source", "user"),
            extra=dict(d.get("extra", {})),
            at_start=bool(d.get("at_start", False)),
        )
