"""The report's sections, in report order: each is one function of the ReportContext that returns a
Section, or None to leave the section out. A new section is one more function added to SECTIONS."""

from __future__ import annotations

from ..analysis.tables import sort_configurations
from ..schema import DS_COLUMNS, DS_RANK_COLUMNS, column_names
from .blocks import (
    Block,
    Details,
    Paragraph,
    ReportContext,
    Section,
    SectionBuilder,
    Table,
)
from .defence_sections import preservation_section
from .format import all_missing, arrow
from .plot_sections import decay_plot_section, steps_section, training_section
from .plots import plot_labels
from .run_sections import configurations_section, data_files_section, header_section, run_section
from .security_sections import security_section
from .tables import (
    MAX_EXAMPLES_PER_CATEGORY,
    MethodTable,
    downstream_detail,
    downstream_summary,
    es_table,
    flip_counts,
    flip_examples,
    flip_ratio_table,
    flip_totals,
    headline_table,
    key_table,
    relative_decay_table,
    selective_layer_groups,
    selective_table,
    with_model_averages,
)
from .why_sections import why_edits_decay_section

DECAY_LINK = "[results/decay.csv](results/decay.csv)"
FLIPS_LINK = "[results/flips.csv](results/flips.csv)"
SPREAD_NOTE = (
    "Configurations that differ only in their seed are averaged; with several seeds a cell reads "
    "`mean ± SD` (sample standard deviation over the seeds) and `seeds` counts them."
)

TITLE_KEY = "Key results"
TITLE_ES = "ES before → after fine-tuning (paper Table 2)"
TITLE_RELATIVE = "Relative ES decay (paper Table 4)"
TITLE_FLIP_RATIO = "ΔES, Edit Flip Ratio and emergent edits (paper Table 5)"
TITLE_FLIPS = "Edit flip categories (paper Table 6)"
TITLE_SELECTIVE = "Selective-layer fine-tuning (paper Table 7)"
TITLE_DOWNSTREAM = "Downstream accuracy (paper Table 8)"


def layers_note(table: MethodTable) -> str | None:
    if not table.excluded:
        return None
    return (
        f"Only fine-tuning with `ft_layers = {table.primary_layers}` is shown; {table.excluded} "
        f"configuration(s) with other layer choices are in “{TITLE_SELECTIVE}”."
    )


def key_results_section(ctx: ReportContext) -> Section:
    table = key_table(ctx.final)
    if table.empty:
        return Section(TITLE_KEY, [Paragraph(f"No configurations in {DECAY_LINK}.")])
    blocks: list[Block] = []
    headline, note = headline_table(ctx.final)
    if not headline.empty:
        blocks.append(
            Table(
                headline,
                source=(
                    f"Mean over the configurations of each row (edit methods, edit counts and "
                    f"seeds together), from {DECAY_LINK}, final rows: `es_ed`, `es_ed_ft`, "
                    "`delta_es` (points), `efr`, `ds_M_ft`, `ds_M_ed_ft` (generation protocol), "
                    f"all in %. {note or ''}"
                ),
            )
        )
    labels = plot_labels(ctx.final)
    shown = table.drop(columns=["ES before", "ES after", "config_id"])
    shown.insert(0, "configuration", table["config_id"].map(lambda c: labels.get(str(c), c)))
    shown.insert(
        shown.columns.get_loc("ΔES"),
        "ES before → after",
        [arrow(b, a) for b, a in zip(table["ES before"], table["ES after"])],
    )
    shown["config_id"] = table["config_id"]
    blocks.append(
        Details(
            f"Per configuration ({len(shown)})",
            [
                Table(
                    shown,
                    source=(
                        f"Source: {DECAY_LINK}, the final row of each configuration; columns "
                        "`es_ed` → `es_ed_ft`, `delta_es` (points), `relative_decay`, `efr`, "
                        "`ds_M_ft`, `ds_M_ed_ft` (generation protocol)."
                    ),
                )
            ],
        )
    )
    kinds = [k for k in dict.fromkeys(ctx.final["efficacy_kind"]) if k]
    if kinds:
        rules = {
            "counterfact": "`counterfact`: P(new object) > P(true object) on the rewrite prompt",
            "zsre": "`zsre`: teacher-forced token accuracy of the new answer (for EFR and flips an "
            "edit succeeds when every token is the argmax, or most of them: column `indicator`)",
        }
        blocks.append(
            Paragraph(
                "Efficacy measured as (column `efficacy_kind`, PAPER §2.7): "
                + "; ".join(rules.get(k, f"`{k}`") for k in kinds)
                + "."
            )
        )
    return Section(TITLE_KEY, blocks)


def es_section(ctx: ReportContext) -> Section:
    table = es_table(ctx.final)
    if table.frame.empty:
        return Section(TITLE_ES, [Paragraph("No ES measured.")])
    return _method_table_section(
        TITLE_ES,
        table,
        Table(
            table.formatted(),
            source=(
                f"Source: {DECAY_LINK}, final rows; No FT = `es_ed` (ES of M_ed), each fine-tuning "
                "column = "
                f"`es_ed_ft` (ES of M_ed_ft), in %. {SPREAD_NOTE}"
            ),
        ),
    )


def _method_table_section(title: str, table: MethodTable, rendered: Table) -> Section:
    """A per-fine-tuning-method table, followed by the note on configurations tuned on other layers."""
    blocks: list[Block] = [rendered]
    note = layers_note(table)
    if note:
        blocks.append(Paragraph(note))
    return Section(title, blocks)


def relative_decay_section(ctx: ReportContext) -> Section:
    table = relative_decay_table(ctx.final)
    if table.frame.empty or not table.value_columns:
        return Section(TITLE_RELATIVE, [Paragraph("Not measured: no fine-tuned configurations.")])
    return _method_table_section(
        TITLE_RELATIVE,
        table,
        Table(
            with_model_averages(table),
            source=(
                f"Source: {DECAY_LINK}, final rows, column `relative_decay` = (ES_ed − ES_ed_ft) / "
                "ES_ed × 100 "
                "(%; positive = edits lost). Rows “average” are the mean of that model's rows. "
                f"{SPREAD_NOTE}"
            ),
        ),
    )


def flip_ratio_section(ctx: ReportContext) -> Section:
    table = flip_ratio_table(ctx.final)
    if table.frame.empty or not table.value_columns:
        return Section(TITLE_FLIP_RATIO, [Paragraph("Not measured: no fine-tuned configurations.")])
    indicators = [i for i in dict.fromkeys(ctx.final["indicator"]) if i]
    source = (
        f"Source: {DECAY_LINK}, final rows; ΔES = `delta_es` = ES_ed − ES_ed_ft (points), EFR = "
        "`efr` = "
        "share of edits successful on M_ed that fail on M_ed_ft (%), emergent = `emergent_ratio` "
        f"(edits failing on M_ed that succeed on M_ed_ft, %). {SPREAD_NOTE}"
    )
    if indicators:
        source += " Per-edit success indicator: " + ", ".join(f"`{i}`" for i in indicators) + "."
    return _method_table_section(TITLE_FLIP_RATIO, table, Table(table.formatted(), source=source))


def flips_section(ctx: ReportContext) -> Section:
    flips = ctx.results.flips
    if flips is None or flips.empty:
        return Section(
            TITLE_FLIPS,
            [
                Paragraph(
                    "Per-edit flip categories not measured (`results/flips.csv` absent or empty). "
                    f"Aggregate counts, where recorded, are in {DECAY_LINK} (`n_stable`, "
                    "`n_erased`, `n_emergent`, "
                    "`n_impossible`)."
                )
            ],
        )
    blocks: list[Block] = [
        Paragraph(
            "stable: succeeds on M_ed and on M_ed_ft; erased: succeeds on M_ed, fails on M_ed_ft; "
            "emergent: fails on M_ed, succeeds on M_ed_ft; impossible: fails on both."
        ),
        Table(
            flip_totals(flips, ctx.final),
            floatfmt=".0f",
            source=(
                f"Edits per category, summed over the configurations of each row, from {FLIPS_LINK} "
                "at each configuration's last step."
            ),
        ),
        Details(
            "Per configuration",
            [
                Table(
                    flip_counts(flips, ctx.final),
                    floatfmt=".0f",
                    source=(
                        f"Source: {FLIPS_LINK}, rows at each configuration's last step, counted "
                        "per `category`."
                    ),
                )
            ],
        ),
    ]
    examples = flip_examples(flips)
    if not examples.empty:
        blocks.append(
            Table(
                examples,
                source=(
                    f"Examples: the first {MAX_EXAMPLES_PER_CATEGORY} edits per category (by "
                    "`config_id`, `case_id`) "
                    f"from {FLIPS_LINK}; efficacy columns `efficacy_before` → `efficacy_after`."
                ),
            )
        )
    return Section(TITLE_FLIPS, blocks)


def selective_layers_section(ctx: ReportContext) -> Section | None:
    rows = selective_layer_groups(ctx.final)
    if rows.empty:
        return None
    configurations = rows[
        [
            "config_id",
            "model",
            "edit_method",
            "n_edits",
            "ft_method",
            "ft_data",
            "ft_layers",
            "seed",
        ]
    ]
    return Section(
        TITLE_SELECTIVE,
        [
            Table(
                selective_table(ctx.final),
                source=(
                    f"Source: {DECAY_LINK}, final rows. M = base model (`es_M`, `ds_M`, "
                    "`ds_rank_M`; PS and NS of M are "
                    "not in decay.csv unless `ps_M` / `ns_M` columns exist), M_ed = `es_ed`, "
                    "`ps_ed`, `ns_ed`, "
                    "`ds_M_ed`, `ds_rank_M_ed`; ft <layers> = the M_ed_ft columns (`es_ed_ft`, "
                    "`ps_ed_ft`, `ns_ed_ft`, "
                    "`ds_M_ed_ft`, `ds_rank_M_ed_ft`) of the configurations fine-tuned on those "
                    "layers. DS = generation "
                    f"protocol, DS (rank) = rank classification; all in %. {SPREAD_NOTE}"
                ),
            ),
            Details(
                "Configurations compared above",
                [Table(sort_configurations(configurations), source=f"From {DECAY_LINK}.")],
            ),
        ],
    )


def downstream_section(ctx: ReportContext) -> Section:
    final = ctx.final
    protocols = (
        ("generation protocol", column_names(DS_COLUMNS)),
        ("rank-classification protocol", column_names(DS_RANK_COLUMNS)),
    )
    blocks: list[Block] = []
    for name, columns in protocols:
        if all_missing(final, columns):
            blocks.append(
                Paragraph(
                    f"Downstream accuracy, {name}: not measured (`{'`, `'.join(columns)}` empty)."
                )
            )
            continue
        ds_m, ds_ed, ds_ft, ds_ed_ft, noft, ft = columns
        blocks.append(Paragraph(f"**Downstream accuracy, {name}**"))
        blocks.append(
            Table(
                downstream_summary(final, noft, ft),
                source=(
                    "Degradation (%) caused by the prior edit, per model: mean ± SD (n values) "
                    f"from {DECAY_LINK}, final "
                    f"rows. No FT = `{noft}` (M_ed against M; one value per edit setting and "
                    "seed), fine-tuning columns = "
                    f"`{ft}` (M_ed_ft against M_ft). Positive = the edit costs downstream accuracy."
                ),
            )
        )
        blocks.append(
            Details(
                f"Per configuration, {name}",
                [
                    Table(
                        sort_configurations(downstream_detail(final, columns)),
                        source=(
                            f"Per configuration, from {DECAY_LINK}: `{ds_m}`, `{ds_ed}`, `{ds_ft}`, "
                            f"`{ds_ed_ft}` (accuracy, %), "
                            f"`{noft}`, `{ft}` (degradation, %)."
                        ),
                    )
                ],
            )
        )
    return Section(TITLE_DOWNSTREAM, blocks)


SECTIONS: list[SectionBuilder] = [
    header_section,
    key_results_section,
    es_section,
    relative_decay_section,
    flip_ratio_section,
    flips_section,
    selective_layers_section,
    downstream_section,
    why_edits_decay_section,
    security_section,
    preservation_section,
    decay_plot_section,
    steps_section,
    training_section,
    configurations_section,
    run_section,
    data_files_section,
]
