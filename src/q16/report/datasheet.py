"""A draft answer to Question 16 of Datasheets for Datasets, from an inference run.

Q16: "Does the dataset contain data that, if viewed directly, might be offensive, insulting,
threatening, or might otherwise cause anxiety? If so, please describe why." The draft gives
the evidence (counts, threshold, model, most affected classes) and the caveats; the dataset's
authors write the answer after reviewing the flagged images.
"""

from __future__ import annotations

import pandas as pd

from q16.report.estimates_text import estimates_section
from q16.report.heads_table import heads_markdown
from q16.report.people import people_markdown
from q16.report.source_stats import source_stats_lines
from q16.review.estimates import Estimates
from q16.review.run import Coverage, InferenceRun
from q16.text import md_cell

QUESTION = (
    "Does the dataset contain data that, if viewed directly, might be offensive, insulting, "
    "threatening, or might otherwise cause anxiety? If so, please describe why."
)


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.2f} %" if whole else "n/a"


def datasheet_markdown(
    run: InferenceRun,
    counts: Coverage,
    per_class: pd.DataFrame,
    top: int = 15,
    estimates: Estimates | None = None,
) -> str:
    """``datasheet_q16.md``: evidence, most affected classes, caveats — a draft, not a verdict.

    Every string from the run (class names, model, paths) is escaped for Markdown; images that
    were not scored are stated next to the counts, never folded into "not flagged".
    """
    s, m = run.summary, md_cell
    scored, flagged = counts.scored, counts.flagged
    lines = ["# Datasheet, Question 16 — draft answer", ""]
    if run.random_weights:
        lines += [
            "> **WARNING: these scores come from a model with RANDOM weights** "
            f"(model {m(s.get('model'))}, pretrained={m(str(s.get('pretrained')))}). They say "
            "nothing about the images; do not use this draft for a real datasheet.",
            "",
        ]
    if not counts.complete:
        lines += [f"> **WARNING: {counts.warning()}**", ""]
    weights = "none: RANDOM" if run.random_weights else s.get("weights") or s.get("pretrained")
    lines += [
        f"> *{QUESTION}*",
        "",
        "## Draft answer",
        "",
        f"We screened {scored:,} images with the Q16 classifier (Schramowski et al., FAccT 2022): "
        f"a frozen CLIP model ({m(s.get('model'))}, weights {m(weights)}) steered by "
        f"{_prompts(s.get('prompt_source'))}. "
        f"{flagged:,} of the {scored:,} scored images ({_pct(flagged, scored)}) scored "
        f"p(inappropriate) ≥ {run.threshold:g} and were flagged as possibly inappropriate"
        + (
            f"; **{counts.unscored:,} images were not scored** (unreadable, or no finite "
            "score) and were not screened at all."
            if counts.unscored
            else "."
        )
        + " **[Reviewers: state how many flagged images you confirmed, what kinds of content they"
        " show, and what you did about them (removed, kept with a warning, …).]**",
        "",
        *estimates_section(estimates),
        "## Classes most affected",
        "",
    ]
    shown = per_class[per_class["flagged"] > 0].head(top)
    if shown.empty:
        lines += [
            "No image was flagged." if scored else "No image was scored, so none was flagged.",
            "",
        ]
    else:
        lines += [
            "| class | flagged | scored | share of class flagged |",
            "|---|---:|---:|---:|",
        ]
        for r in shown.itertuples(index=False):
            scored_cell = "?" if pd.isna(r.scored) else f"{int(r.scored):,}"
            share = "?" if pd.isna(r.share_flagged) else f"{100 * r.share_flagged:.1f} %"
            lines.append(f"| {m(r.class_name)} | {int(r.flagged):,} | {scored_cell} | {share} |")
        lines.append("")
    lines += heads_markdown(s, scored)
    lines += people_markdown(s, scored, estimates)
    lines += source_stats_lines(s, scored)  # img2dataset: URLs listed, failed, screened
    lines += [
        "## How these numbers were produced",
        "",
        f"- inputs: {_inputs(s.get('inputs'))}; shards done {m(s.get('shards_done'))} of "
        f"{m(s.get('shards_total'))}",
        f"- model: {m(s.get('model'))} (pretrained={m(str(s.get('pretrained')))}); prompts: "
        f"{m(s.get('prompt_source'))}; threshold: {run.threshold:g}",
        f"- date: {m(s.get('date'))}; q16 git commit: {m(s.get('git_commit'))}; machine: "
        f"{_machine(s.get('machine'))}",
        "- per-image scores: `scores/*.parquet`; flagged images: `flagged.csv`, `report.html`; "
        "the curators' decisions: `review.csv`",
        "",
        "## Caveats (keep these in the datasheet)",
        "",
        "- **The classifier proposes, humans decide.** Every flagged image must be looked at by a"
        " person before anything is claimed about it or done to it; unflagged images are not"
        " certified harmless.",
        f"- The threshold ({run.threshold:g}) trades missed content against false alarms;"
        " state why it was chosen (e.g. from the precision/recall table of `train.py"
        " experiment=smid_cv`). Q16's prompts were learned and evaluated on SMID, a few thousand"
        " rated photos; accuracy on other image distributions is not known.",
        "- Known failure modes: what is offensive depends on culture and context, which a single"
        " image and a fixed pair of prompts cannot capture; art, news, medical and historical"
        " images are flagged alongside gratuitous content; CLIP carries the social biases of its"
        " web training data, so some groups of people may be flagged more often.",
        "- Class shares are only as good as the dataset's labels; `(unknown class)` collects"
        " images without one.",
    ]
    if run.random_weights:
        lines.append("- This run used RANDOM weights: every number above is meaningless.")
    return "\n".join(lines) + "\n"


def _prompts(source: object) -> str:
    if source in (None, "", "zeroshot"):
        return "the paper's hand-written zero-shot prompts (not learned; markedly less accurate)"
    return f"prompts learned on socio-moral ratings ({md_cell(source)})"


def _inputs(inputs: object) -> str:
    if isinstance(inputs, list | tuple):
        shown = ", ".join(md_cell(i) for i in inputs[:3])
        return shown + (f" and {len(inputs) - 3} more" if len(inputs) > 3 else "")
    return md_cell(inputs) if inputs else "?"


def _machine(machine: object) -> str:
    if isinstance(machine, dict):
        return ", ".join(f"{md_cell(k)}={md_cell(v)}" for k, v in machine.items() if v)
    return md_cell(machine) if machine else "?"
