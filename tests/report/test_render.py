"""Rendering: the table of contents and its anchors, collapsed blocks, and the small-multiple plots."""

from __future__ import annotations

import re

import pandas as pd

from editdecay.report.blocks import Details, Paragraph, Section, Table
from editdecay.report.plots import MAX_PANELS, plot_decay_steps, plot_training
from editdecay.report.render import anchors, render_html, render_markdown
from editdecay.report.tables import es_table
from editdecay.schema import DECAY

SECTIONS = [
    Section("Report", [Paragraph("intro")], level=1),
    Section("ES before → after fine-tuning (paper Table 2)", [Paragraph("a")]),
    Section(
        "Key results", [Details("Per configuration (2)", [Table(pd.DataFrame({"x": [1, 2]}))])]
    ),
    Section("Key results", [Paragraph("again")]),
]


def test_anchors_follow_github_and_number_repeats():
    assert anchors(SECTIONS) == [
        "report",
        "es-before--after-fine-tuning-paper-table-2",
        "key-results",
        "key-results-1",
    ]


def test_html_contents_link_to_heading_ids(tmp_path):
    page = render_html(SECTIONS, "t")
    links = re.findall(r'<a href="#([^"]+)">', page)
    ids = re.findall(r'<h\d id="([^"]+)">', page)
    assert links == ids[1:]
    assert page.index('<nav class="toc">') < page.index('<h2 id="es-before')
    assert "<details><summary>Per configuration (2)</summary>" in page
    assert page.index("<details>") < page.index("<table>") < page.index("</details>")


def test_markdown_contents_and_details(tmp_path):
    text = render_markdown(SECTIONS, tmp_path)
    assert "- [Key results](#key-results)" in text and "(#key-results-1)" in text
    assert text.index("**Contents**") < text.index("## ES before")
    details = text[text.index("<details>") : text.index("</details>")]
    assert "| x |" in details.replace("  ", " ") or "|   x |" in details


def test_no_contents_for_a_short_report(tmp_path):
    short = SECTIONS[:2]
    assert "Contents" not in render_markdown(short, tmp_path)
    assert "<nav" not in render_html(short, "t")


def _decay_rows(n: int) -> pd.DataFrame:
    rows = []
    for i in range(n):
        for step, es in ((10, 90.0), (20, 80.0)):
            rows.append(
                DECAY.row(
                    config_id=f"c{i}",
                    model="tiny",
                    edit_method="memit",
                    n_edits=10 + i,
                    ft_method="lora",
                    seed=0,
                    step=step,
                    final=step == 20,
                    es_ed=100.0,
                    es_ed_ft=es,
                    efr=100 - es,
                )
            )
    return pd.DataFrame(rows)


def test_decay_steps_draw_one_panel_per_configuration_on_a_full_axis():
    decay = _decay_rows(5)
    figure = plot_decay_steps(decay, [f"c{i}" for i in range(5)])
    panels = [a for a in figure.axes if a.get_visible()]
    assert len(panels) == 5
    assert all(a.get_ylim()[0] < 0 and a.get_ylim()[1] > 100 for a in panels)
    assert figure.legends, "the legend sits outside the panels"
    many = plot_decay_steps(_decay_rows(MAX_PANELS + 3), [f"c{i}" for i in range(MAX_PANELS + 3)])
    assert len([a for a in many.axes if a.get_visible()]) == MAX_PANELS


def test_training_panels_per_fine_tuning_setting():
    final = pd.DataFrame(
        {
            "config_id": ["a", "b", "c"],
            "model": "tiny",
            "ft_method": ["lora", "lora", "full"],
            "ft_data": "commonsense",
            "ft_layers": "all",
            "edit_method": ["memit", "alphaedit", "memit"],
            "edit_data": "counterfact",
        }
    )
    training = pd.DataFrame(
        [
            {"config_id": c, "state": s, "step": k, "loss": 3.0 - 0.1 * k}
            for c in "abc"
            for s in ("M_ft", "M_ed_ft")
            for k in range(1, 5)
        ]
    )
    figure = plot_training(training, final)
    titles = sorted(a.get_title() for a in figure.axes if a.get_visible())
    assert titles == ["full", "lora"]
    lora = next(a for a in figure.axes if a.get_title() == "lora")
    assert len(lora.get_lines()) == 4  # two edited configurations, each with its M_ft


def test_seeds_column_counts_the_seeds_averaged_in_the_row():
    rows = [
        DECAY.row(
            config_id="cf-none",
            model="m",
            edit_method="memit",
            edit_data="cf",
            n_edits=10,
            ft_method="none",
            seed=0,
            final=True,
            es_ed=100.0,
        ),
        *[
            DECAY.row(
                config_id=f"cf-lora-{s}",
                model="m",
                edit_method="memit",
                edit_data="cf",
                n_edits=10,
                ft_method="lora",
                ft_data="commonsense",
                seed=s,
                step=5,
                final=True,
                es_ed=100.0,
                es_ed_ft=90.0 + s,
            )
            for s in (0, 1)
        ],
        DECAY.row(
            config_id="cf-hotpot",
            model="m",
            edit_method="memit",
            edit_data="cf",
            n_edits=10,
            ft_method="lora",
            ft_data="hotpotqa",
            seed=0,
            step=5,
            final=True,
            es_ed=100.0,
            es_ed_ft=80.0,
        ),
    ]
    from editdecay.analysis.tables import final_rows

    table = es_table(final_rows(pd.DataFrame(rows))).frame
    seeds = dict(zip(table["ft_data"], table["seeds"]))
    assert seeds == {"commonsense": 2, "hotpotqa": 1}
