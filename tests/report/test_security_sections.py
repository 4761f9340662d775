"""The security section's persistence table and its verdict in words, each way: an attack that
fine-tuning removes (back to the unattacked model's level) and one that survives."""

from __future__ import annotations

import pandas as pd

from editdecay.report.security_sections import persistence_table, removal_sentences


def _probes(config_id: str, fired: dict[tuple[str, int], int], n: int = 40) -> pd.DataFrame:
    rows = []
    for (state, step), k in fired.items():
        for i in range(n):
            rows.append(
                {
                    "config_id": config_id,
                    "state": state,
                    "step": step,
                    "probe_id": f"attack-{i}",
                    "group": "attack",
                    "fires": i < k,
                    "right": i >= k,
                }
            )
    return pd.DataFrame(rows)


def _attacks(probes: pd.DataFrame) -> pd.DataFrame:
    from editdecay.attacks.score import attack_metrics

    return attack_metrics(probes)


def _final(config_id: str, ds_ed: float, ds_ed_ft: float) -> dict:
    return {
        "config_id": config_id,
        "model": "m",
        "edit_data": "attack:backdoor",
        "ft_method": "lora",
        "ft_layers": "all" if config_id == "a" else "edited",
        "step": 10,
        "ds_M_ed": ds_ed,
        "ds_M_ed_ft": ds_ed_ft,
    }


def test_an_attack_fine_tuning_removes_and_one_it_does_not():
    probes = pd.concat(
        [
            _probes("a", {("M", 0): 0, ("M_ed", 0): 38, ("M_ft", 10): 1, ("M_ed_ft", 10): 2}),
            _probes("b", {("M", 0): 0, ("M_ed", 0): 38, ("M_ft", 10): 1, ("M_ed_ft", 10): 30}),
        ]
    )
    final = pd.DataFrame([_final("a", 50.0, 47.0), _final("b", 50.0, 49.0)])
    table = persistence_table(_attacks(probes), probes, final).set_index("config_id")
    assert bool(table.loc["a", "removed"]) and not bool(table.loc["b", "removed"])
    assert table.loc["a", "ds_cost"] == 3.0 and table.loc["b", "kept"] == 30
    assert table.loc["b", "ratio"] == 30 / 38
    words = " ".join(removal_sentences(table.reset_index(), {"a": "LoRA all", "b": "LoRA edited"}))
    assert "removed by LoRA all" in words and "1 of 2 recipes" in words

    survives = table.reset_index()
    survives = survives[survives["config_id"] == "b"]
    words = " ".join(removal_sentences(survives, {"b": "LoRA edited"}))
    assert "no recipe removed it" in words and "75.0 %" in words


def test_an_attack_whose_baseline_fires_as_much_is_not_testable():
    # the unattacked model fine-tuned the same way fires on 39 of 40 probes itself (as a task
    # fine-tuning that makes the model give one answer to every item): ASR after cannot decide
    probes = _probes("c", {("M", 0): 10, ("M_ed", 0): 33, ("M_ft", 10): 40, ("M_ed_ft", 10): 39})
    table = persistence_table(_attacks(probes), probes, pd.DataFrame([_final("c", 50.0, 50.0)]))
    assert table.loc[0, "removed"] == "not testable"
    words = " ".join(removal_sentences(table, {"c": "LoRA on the task"}))
    assert "backdoor on m: not testable with LoRA on the task:" in words and "100.0 %" in words
    assert "removed by" not in words and "no recipe removed it" not in words
    # with room between the baseline and the planted level the same numbers decide again
    probes = _probes("d", {("M", 0): 0, ("M_ed", 0): 38, ("M_ft", 10): 1, ("M_ed_ft", 10): 39})
    table = persistence_table(_attacks(probes), probes, pd.DataFrame([_final("d", 50.0, 50.0)]))
    assert table.loc[0, "removed"] is False or table.loc[0, "removed"] == False  # noqa: E712
