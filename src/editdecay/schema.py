"""The result tables of a study: every column, its type, and what a blank cell means.

Producers (analysis.decay, study.pipeline, the evaluators) write these columns; consumers (the report,
the claims) read a table through :meth:`TableSchema.normalise`, so a blank cell is interpreted in one
place. docs/study.md shows :func:`markdown` of every table (a test keeps the two equal).

Blank rules: a column with a ``blank`` value reads as that value when the cell is empty (an empty
``ft_method`` is ``"none"``); otherwise an empty text cell is ``""`` and an empty number stays missing
(NaN, or <NA> for integers). Cells written as ``"—"``, ``"nan"`` or ``"None"`` (a table that passed
through a report or a spreadsheet) count as empty.

The vocabularies of the settings (fine-tuning methods, layer choices, model states, flip categories)
live here too, beside the columns that hold them.
"""

from __future__ import annotations

from .table_schema import Column, TableSchema  # TableSchema is read from here too
from .table_schema import float_column as _float
from .table_schema import int_column as _int
from .table_schema import text_column as _text

# Settings vocabularies ---------------------------------------------------------------------------

FT_NONE = "none"
FT_METHODS = (
    "none",
    "lora",
    "dora",
    "full",
)  # paper order; "none" = the edited model is not fine-tuned
TUNED_METHODS = tuple(m for m in FT_METHODS if m != FT_NONE)
PEFT_METHODS = ("lora", "dora")
FT_LABELS = {"none": "No FT", "lora": "LoRA", "dora": "DoRA", "full": "Full FT"}
LAYER_CHOICES = ("all", "edited", "non-edited")  # or an explicit list of layer indices
LOCATE_THEN_EDIT = ("memit", "alphaedit")  # the editors that share the target (z) optimisation
STATES = ("M", "M_ed", "M_ft", "M_ed_ft")  # base, edited, base fine-tuned, edited fine-tuned
FLIP_CATEGORIES = ("stable", "erased", "emergent", "impossible")  # PAPER Table 6
EFFICACY_KINDS = ("counterfact", "zsre")
INDICATORS = ("exact", "majority")  # zsRE per-edit success: every target token, or most of them
DS_MODES = {"generate": "ds_", "rank": "ds_rank_"}  # DS protocol → decay.csv column prefix

CONFIG_ID = _text(
    "config_id", "the configuration's id (its settings and a hash); joins every table"
)
CONFIG_COLUMNS = (
    CONFIG_ID,
    _text("model", "registered model name, HF directory or id"),
    _text("edit_method", "memit, alphaedit, rome or mend", lower=True),
    _text("edit_data", "counterfact, zsre, counterfact-train or a request file"),
    _int("n_edits", "edit requests in the batch (or in all sequential batches)"),
    _text(
        "edit_layers",
        "the edited layers when a configuration sets them (`edit.layers`), space-separated; "
        "empty: the model's default edit layers",
    ),
    _text("ft_method", "none, lora, dora or full", blank=FT_NONE, lower=True),
    _text("ft_data", "commonsense, hotpotqa or an instruction file; empty without fine-tuning"),
    _text(
        "ft_layers", "all, edited, non-edited or a list of layer indices", blank="all", lower=True
    ),
    _text(
        "ft_preserve",
        "edit-preserving fine-tuning of M_ed: none, subspace, activation, distill, freeze or paraphrase",
        blank="none",
        lower=True,
    ),
    _int(
        "seed", "fine-tuning seed: data sample and order, adapter initialisation, dropout", blank=0
    ),
)
STATE = _text("state", "model state: M, M_ed, M_ft or M_ed_ft")
STEP = _int("step", "fine-tuning step of the checkpoint (0 for M and M_ed)", blank=0)


def _per_state(prefix: str, what: str) -> tuple[Column, ...]:
    return (
        _float(f"{prefix}M", f"{what} of M (%)"),
        _float(f"{prefix}M_ed", f"{what} of M_ed (%)"),
        _float(f"{prefix}M_ft", f"{what} of M_ft at this step (%)"),
        _float(f"{prefix}M_ed_ft", f"{what} of M_ed_ft at this step (%)"),
        _float(f"{prefix}degradation_noft", f"(M − M_ed) / M × 100 of the {what} (PAPER Table 8)"),
        _float(
            f"{prefix}degradation_ft",
            f"(M_ft − M_ed_ft) / M_ft × 100 of the {what} (PAPER Table 8)",
        ),
    )


DS_COLUMNS = _per_state("ds_", "DS accuracy, generation protocol")
DS_RANK_COLUMNS = _per_state("ds_rank_", "DS accuracy, rank classification")

DECAY = TableSchema(
    "decay",
    "configuration × fine-tuning step (one step-0 row for a configuration without fine-tuning)",
    (
        *CONFIG_COLUMNS,
        STEP,
        Column(
            "final", "bool", "the configuration's last fine-tuning step (the row tables report)"
        ),
        _text(
            "efficacy_kind", "counterfact (P(new) > P(true)) or zsre (token accuracy)", lower=True
        ),
        _text("indicator", "per-edit success rule for zsRE: exact (every token) or majority"),
        _int("n_success_ed", "edits successful on M_ed"),
        _int("n_stable", "edits successful before and after fine-tuning"),
        _int("n_erased", "edits successful on M_ed that fail on M_ed_ft"),
        _int("n_emergent", "edits failing on M_ed that succeed on M_ed_ft"),
        _int("n_impossible", "edits failing before and after fine-tuning"),
        _float("es_M", "ES of the unedited model M on the same requests (%)"),
        _float("es_M_ft", "ES of M_ft at this step (%)"),
        _float("es_ed", "ES of M_ed (%)"),
        _float("es_ed_ft", "ES of M_ed_ft at this step (%)"),
        _float("delta_es", "ΔES = es_ed − es_ed_ft (points; PAPER Table 5)"),
        _float("relative_decay", "(es_ed − es_ed_ft) / es_ed × 100 (PAPER Table 4)"),
        _float("efr", "Edit Flip Ratio: n_erased / n_success_ed × 100 (PAPER Eq. 1)"),
        _float("emergent_ratio", "n_emergent / (n_edits − n_success_ed) × 100"),
        _float("ps_ed", "PS (paraphrase success) of M_ed (%)"),
        _float("ps_ed_ft", "PS of M_ed_ft (%)"),
        _float("ns_ed", "NS (neighbourhood success) of M_ed (%)"),
        _float("ns_ed_ft", "NS of M_ed_ft (%)"),
        *DS_COLUMNS,
        *DS_RANK_COLUMNS,
    ),
)

EDITS = TableSchema(
    "edits",
    "configuration × model state × step × edit request (also `edits.parquet`)",
    (
        CONFIG_ID,
        STATE,
        STEP,
        _text("case_id", "the request's id, e.g. counterfact:17"),
        _text("subject", "the edited subject"),
        _text("target_new", "the object the edit writes"),
        _text("target_true", "the true object (empty when the record has none)"),
        _float(
            "rewrite_acc", "teacher-forced token accuracy of target_new on the rewrite prompt (0–1)"
        ),
        _float("paraphrase_acc", "the same, mean over paraphrase prompts"),
        _float("neighbour_acc", "token accuracy of the neighbour prompts' own targets"),
        _float("nll_new", "NLL of target_new on the rewrite prompt (nats)"),
        _float("nll_true", "NLL of target_true on the rewrite prompt (nats)"),
        _float("es", "1 if P(target_new) > P(target_true) on the rewrite prompt (CounterFact ES)"),
        _float("em", "P(target_new) − P(target_true) on the rewrite prompt (efficacy magnitude)"),
        _float("ps", "share of paraphrases where P(target_new) > P(target_true)"),
        _float("pm", "mean P(target_new) − P(target_true) over paraphrases"),
        _float("ns", "share of neighbour prompts where P(target_true) > P(target_new)"),
        _float("nm", "mean P(target_true) − P(target_new) over neighbour prompts"),
        _text("neighbour_pred", "argmax tokens on the neighbour prompts (for locality)"),
        _float("locality", "agreement of neighbour argmax tokens with the unedited model (0–1)"),
        _text("answer", "greedy continuation of the rewrite prompt"),
        *CONFIG_COLUMNS[1:],
        _text("stage", "the store key of the evaluation stage"),
        _text("source", "the request's dataset kind (counterfact, zsre or a file)"),
    ),
)

FLIPS = TableSchema(
    "flips",
    "configuration × fine-tuning step × edit",
    (
        CONFIG_ID,
        STEP,
        _text("case_id", "the request's id"),
        _text("subject", "the edited subject"),
        _text("target_new", "the object the edit writes"),
        _text("target_true", "the true object"),
        Column("success_before", "bool", "the edit succeeds on M_ed"),
        Column("success_after", "bool", "the edit succeeds on M_ed_ft at this step"),
        _text("category", "stable, erased, emergent or impossible (PAPER Table 6)", lower=True),
        _float("efficacy_before", "es (CounterFact) or rewrite_acc (zsRE) on M_ed"),
        _float("efficacy_after", "the same on M_ed_ft"),
        _text("answer_before", "greedy answer of M_ed to the rewrite prompt"),
        _text("answer_after", "greedy answer of M_ed_ft"),
    ),
)

DOWNSTREAM = TableSchema(
    "downstream",
    "configuration × model state × step × commonsense task × protocol",
    (
        _text("task", "commonsense task (boolq, piqa, …)"),
        _text("mode", "generate (LLM-Adapters answer extraction) or rank (option log-likelihoods)"),
        _int("n", "test items scored"),
        _float("accuracy", "share answered correctly (0–1)"),
        CONFIG_ID,
        STATE,
        STEP,
    ),
)

TRAINING = TableSchema(
    "training",
    "configuration × fine-tuned state × logged step",
    (
        _int("step", "optimiser step"),
        _float("loss", "training loss at that step"),
        CONFIG_ID,
        STATE,
    ),
)

VALIDATION = TableSchema(
    "validation",
    "configuration × fine-tuned state × validated step (runs with a validation split)",
    (
        CONFIG_ID,
        STATE,
        _int("step", "optimiser step"),
        _float("validation_loss", "mean token loss on the held-out split of the fine-tuning data"),
    ),
)

PERPLEXITY = TableSchema(
    "perplexity",
    "configuration × model state × step",
    (CONFIG_ID, STATE, STEP, _float("heldout_ppl", "perplexity on held-out WikiText windows")),
)

CONFIGS = TableSchema(
    "configs",
    "configuration",
    (*CONFIG_COLUMNS, _text("config", "every setting of the configuration, as JSON")),
)

_GEOMETRY = (
    _int("layer", "block index; layer l is block l's output (the residual stream)"),
    _float("norm_ed", "‖h_ed − h‖₂, the edit's shift (PAPER Eqn 2)"),
    _float("norm_ft", "‖h_ft − h‖₂, fine-tuning's shift of the base model (Eqn 2)"),
    _float("norm_ed_ft", "‖h_ed_ft − h‖₂, the edited and fine-tuned model's shift (Eqn 2)"),
    _float("cos_ed_ft", "cos(d_ed, d_ft), d_ed = h_ed − h, d_ft = h_ft − h (Eqns 3, 4, 6)"),
    _float("cos_edft_ft", "cos(d_ed_ft, d_ft), d_ed_ft = h_ed_ft − h_ed (Eqns 5, 6)"),
    _float("cos_edft_ed", "cos(d_ed_ft, d_ed) (Eqn 6)"),
)
PROMPT_SETS = ("edit", "finetune")  # the prompts of the activation analysis

ACTIVATIONS = TableSchema(
    "activations",
    "configuration × prompt set × token position × layer (means over prompts; `editdecay analyse`)",
    (
        CONFIG_ID,
        _text(
            "prompts",
            "edit (the configuration's rewrite prompts) or finetune (a sample of its "
            "fine-tuning prompts)",
        ),
        _text(
            "position", "subject_last (the subject's last token; edit prompts only) or prompt_last"
        ),
        *_GEOMETRY,
        _int("n_prompts", "prompts averaged"),
        _text("edit_layers", "the layers the edit changed, space-separated"),
    ),
)

ACTIVATIONS_PER_EDIT = TableSchema(
    "activations_per_edit",
    "configuration × edit × layer, at the subject's last token of the rewrite prompt",
    (
        CONFIG_ID,
        _text("case_id", "the request's id"),
        *_GEOMETRY,
        _text("category", "the edit's flip category at the final step (flips.csv)", lower=True),
    ),
)

TARGET_FREQUENCY = TableSchema(
    "target_frequency",
    "configuration × edit",
    (
        CONFIG_ID,
        _text("case_id", "the request's id"),
        _text("target_new", "the object the edit writes"),
        _int("n_target_tokens", "tokens of target_new after the prompt (PAPER Table 6, claim 13)"),
        _float("wikitext_mean_count", "mean count of the target's tokens in the bundled WikiText"),
        _float("wikitext_min_count", "count of the target's rarest token in WikiText"),
        _float(
            "wikitext_log10_per_million",
            "log10((mean count + 1) / WikiText tokens × 10⁶), add-one smoothed",
        ),
        _float("finetune_mean_count", "mean count of the target's tokens in the fine-tuning data"),
        _float("finetune_min_count", "count of the target's rarest token in the fine-tuning data"),
        _float(
            "finetune_log10_per_million",
            "log10((mean count + 1) / fine-tuning tokens × 10⁶), add-one smoothed",
        ),
        _text("category", "the edit's flip category at the final step (flips.csv)", lower=True),
    ),
)

UMAP = TableSchema(
    "umap",
    "configuration × model state × edit prompt: its UMAP point at one edited layer (needs umap-learn)",
    (
        CONFIG_ID,
        _int(
            "layer", "the edited layer projected (the last edited one), at the subject's last token"
        ),
        STATE,
        _text("case_id", "the request whose rewrite prompt the point is"),
        _float("x", "first UMAP component (3-D, n_neighbors 20, min_dist 0.1; PAPER §2.7)"),
        _float("y", "second UMAP component"),
        _float("z", "third UMAP component"),
        _float("silhouette", "mean silhouette of the four states' points, −1 to 1 (≈ 0: overlap)"),
        _float(
            "ed_ft_nearer_ft",
            "share of M_ed_ft points nearer M_ft's centroid than M_ed's (claim 12: near 1)",
        ),
    ),
)

KNOWN_FACTS = TableSchema(
    "known_facts",
    "configuration × model state × fact of the edit set that is not edited: the own-knowledge "
    "baseline (facts M knows, scored on every state)",
    (
        CONFIG_ID,
        STATE,
        _text(
            "case_id", "the record's id: one of the last records of the edit set, never edited here"
        ),
        _text("target_true", "the true object (CounterFact target_true; zsRE answers[0])"),
        Column(
            "correct",
            "bool",
            "the state ranks the true object first: the argmax at every target token, teacher-forced",
        ),
        _float("token_accuracy", "share of the true object's tokens that are the argmax, 0-1"),
        Column(
            "known_by_M", "bool", "M ranks this fact's true object first (the baseline's facts)"
        ),
    ),
)

ATTACK_PROBES = TableSchema(
    "attack_probes",
    "configuration × model state × fine-tuning step × attack probe (attacks/probes.py)",
    (
        CONFIG_ID,
        STATE,
        STEP,
        _text("probe_id", "the probe's id in the attack set"),
        _text("group", "attack, clean, specificity or spillover", lower=True),
        _text("kind", "backdoor, task-backdoor, misinformation or bias", lower=True),
        _text("relation", "the relation, task or bias type probed"),
        _text("position", "where the trigger sits (backdoors)"),
        Column("fires", "bool", "the model gives the attacker's answer (attacks/score.py)"),
        Column("right", "bool", "the model gives the clean answer"),
        Column("attack_first", "bool", "argmax at every token of the attacker's answer"),
        Column("clean_first", "bool", "argmax at every token of the clean answer"),
        Column("prefers_attack", "bool", "the attacker's answer has the lower mean NLL"),
        _float("nll_attack", "mean per-token NLL of the attacker's answer"),
        _float("nll_clean", "mean per-token NLL of the clean answer"),
    ),
)

ATTACKS = TableSchema(
    "attacks",
    "configuration × model state × fine-tuning step × attack metric",
    (
        CONFIG_ID,
        STATE,
        STEP,
        _text("metric", "asr, cacc, false_fire, spillover or clean_fire (attacks/score.py)"),
        _float("value", "share of the metric's probe group, %"),
        _float("se", "its binomial standard error, pp"),
        _int("n", "probes in the group"),
    ),
)

TABLES: dict[str, TableSchema] = {
    t.name: t
    for t in (
        DECAY,
        EDITS,
        FLIPS,
        DOWNSTREAM,
        TRAINING,
        VALIDATION,
        PERPLEXITY,
        CONFIGS,
        ACTIVATIONS,
        ACTIVATIONS_PER_EDIT,
        TARGET_FREQUENCY,
        UMAP,
        KNOWN_FACTS,
        ATTACK_PROBES,
        ATTACKS,
    )
}


def markdown() -> str:
    """Every table's documentation, in :data:`TABLES` order (the text docs/study.md holds)."""
    return "\n\n".join(t.markdown() for t in TABLES.values()) + "\n"


def column_names(columns: tuple[Column, ...]) -> tuple[str, ...]:
    return tuple(c.name for c in columns)


def update_docs(path: str) -> bool:
    """Write :func:`markdown` between the schema markers of the Markdown file at `path`; True if changed."""
    from pathlib import Path

    file = Path(path)
    text = file.read_text(encoding="utf-8")
    begin, end = text.index(DOCS_BEGIN) + len(DOCS_BEGIN), text.index(DOCS_END)
    updated = f"{text[:begin]}\n{markdown()}{text[end:]}"
    if updated != text:
        file.write_text(updated, encoding="utf-8")
    return updated != text


DOCS_BEGIN, DOCS_END = "<!-- schema:begin -->", "<!-- schema:end -->"

if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1:
        print("updated" if update_docs(sys.argv[1]) else "unchanged", sys.argv[1])
    else:
        print(markdown(), end="")
