"""The weight-transition section (``WeightTransitionMonitor``): every change of a weight's level is a device write."""

from __future__ import annotations

from quest_lightning.report import plots
from quest_lightning.report.html import Section, Table
from quest_lightning.report.plots import short_name
from quest_lightning.report.sections.common import FigureWriter, new_section, percent, skipped, spread
from quest_lightning.summary import RunSummary


def transitions_section(b: FigureWriter, summary: RunSummary) -> Section:
    """Transition histograms, weight trajectories and change rates of each monitored stage."""
    sec = new_section("transitions")
    transitions = summary.transitions
    for s, r in transitions.items():
        if r.note:
            sec.notes.append(f"Stage {s}: {r.note}")
    stages = [s for s, r in transitions.items() if r.layers]
    if not stages:
        return skipped(
            sec,
            "the summary has no transition counts (attach WeightTransitionMonitor, and train past the first "
            "batch of a stage).",
        )
    if len(stages) >= 2:
        b.add(
            sec,
            plots.transition_overview_figure({s: transitions[s] for s in stages}),
            ["transitions", "overview"],
            "Transitions by stage",
            "Left: share of weights whose level changed per observed step. Right: share of those changes that skip a "
            "level (e.g. −1 → +1 at 2 bits); such writes cost more on devices that move one state at a time.",
        )
    shown = spread(stages)
    if len(shown) < len(stages):
        sec.notes.append(
            f"{len(stages)} stages: per-stage figures are shown for {len(shown)} of them ({', '.join(shown)})."
        )
    for stage in shown:
        res = transitions[stage]
        where = f"epoch {res.epoch}, {res.steps} observed steps, {res.samples} samples"
        b.add(
            sec,
            plots.transition_figure(stage, res.layers),
            ["transitions", stage],
            f"Transition histogram, stage {stage}",
            f"Off-diagonal level-to-level transitions ({where}) as a share of weight-steps, per layer; the legend "
            "gives the share of weights that kept their level per step.",
        )
        if not b.add(
            sec,
            plots.trajectory_figure(stage, res.layers),
            ["trajectories", stage],
            f"Weight trajectories, stage {stage}",
            "Codes of a random sample of weights after each optimizer step of the stage (cf. QUEST Fig. 7a); lines are "
            "offset slightly so that weights on the same level stay apart.",
        ):
            sec.notes.append(
                f"Stage {stage}: no weight trajectories recorded (WeightTransitionMonitor(trajectories=0))."
            )
    rows = []
    for stage in stages:
        for name, info in transitions[stage].layers.items():
            rows.append(
                [stage, short_name(name), info.steps, percent(info.frozen_fraction), percent(info.changed_fraction),
                 percent(info.non_adjacent_fraction)]
            )  # fmt: skip
    cols = ["stage", "layer", "steps", "kept level / step", "changed / step", "changes skipping a level"]
    sec.tables.append(Table(cols, rows, "Transition fractions"))
    return sec
