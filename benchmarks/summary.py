"""The seed means the issues' pass marks are stated in, from the recorded runs (results/*.jsonl).

Prints Markdown: one row per recorded seed, then the mean over the seeds recorded so far (n of 3),
with the pass mark and, for RaSeRec, the gain over the stage-1 encoders of the same seeds.

    python benchmarks/summary.py [--field]
"""

from __future__ import annotations

import statistics
import sys

from records import gain, load_jsonl  # this folder
from stage2 import RESULTS as STAGE2  # the script that writes the records
from stage2 import STAGE1

KEYS = ("test/hr@5", "test/hr@10", "test/ndcg@5", "test/ndcg@10")

# Beauty DuoRec seed 2020 with the configured (random) batches is named duorec_random: the name
# beauty-duorec-2020 belongs to the earlier bucketed run (RESULTS.md, stage 1).
BEAUTY_DUOREC = ["beauty-duorec_random-2020", "beauty-duorec-2021", "beauty-duorec-2022"]
SPORTS_DUOREC = ["sports-duorec-2020", "sports-duorec-2021", "sports-duorec-2022"]
# The default configuration until 2026-12-04, post-LN blocks (configs/fast_postln.yaml): its usual keys are the field's
# protocol (seen items excluded).
BEAUTY_FAST = ["beauty-fast-2020", "beauty-fast-2021", "beauty-fast-2022"]
SPORTS_FAST = ["sports-fast-2020", "sports-fast-2021", "sports-fast-2022"]
# The default with LiGR layers (configs/fast_ligr.yaml; benchmarks/stage1.py, FASTLIGR).
BEAUTY_LIGR = ["beauty-fastligr-2020", "beauty-fastligr-2021", "beauty-fastligr-2022"]
SPORTS_LIGR = ["sports-fastligr-2020", "sports-fastligr-2021", "sports-fastligr-2022"]
# The default from 2026-12-04 to 2026-12-05: BSARec-style blocks at a constant learning rate (benchmarks/stage1.py,
# FASTBSA).
BEAUTY_BSA = ["beauty-fastbsa-2020", "beauty-fastbsa-2021", "beauty-fastbsa-2022"]
SPORTS_BSA = ["sports-fastbsa-2020", "sports-fastbsa-2021", "sports-fastbsa-2022"]
# The default since 2026-12-05: BSA blocks, the learning rate halved after every 2 epochs without a gain
# (configs/fast.yaml; benchmarks/stage1.py, FASTBSA_DECAY).
BEAUTY_DECAY = ["beauty-fastbsadecay-2020", "beauty-fastbsadecay-2021", "beauty-fastbsadecay-2022"]
SPORTS_DECAY = ["sports-fastbsadecay-2020", "sports-fastbsadecay-2021", "sports-fastbsadecay-2022"]
FIELD = (BEAUTY_FAST, SPORTS_FAST, BEAUTY_LIGR, SPORTS_LIGR, BEAUTY_BSA, SPORTS_BSA, BEAUTY_DECAY, SPORTS_DECAY)  # the runs whose usual keys are the field's protocol
# The field's best published figures + 5% (seen items excluded), and the paper's figures (seen items kept).
FIELD_MARK_BEAUTY = {"test/hr@10": 0.0974, "test/ndcg@10": 0.0558}
FIELD_MARK_SPORTS = {"test/hr@10": 0.0597, "test/ndcg@10": 0.0339}
PAPER_BEAUTY = {"test/seen_kept/hr@10": 0.0860, "test/seen_kept/ndcg@10": 0.0463}
PAPER_SPORTS = {"test/seen_kept/hr@10": 0.0497, "test/seen_kept/ndcg@10": 0.0264}
KEPT = ("test/seen_kept/hr@10", "test/seen_kept/ndcg@10")  # the paper's protocol, recorded beside the usual keys

# (title, stage-1 runs, stage-2 variant or None, pass mark {metric: minimum} or None)
GROUPS = [
    ("Beauty, DuoRec `us_x` (issue 2)", BEAUTY_DUOREC, None, {"test/hr@10": 0.0809, "test/ndcg@10": 0.0418}),
    ("Beauty, RaSeRec, published setting (issue 3)", BEAUTY_DUOREC, "paper",
     {"test/hr@10": 0.0834, "test/ndcg@10": 0.0449}),
    ("Sports, DuoRec `us_x` (issue 3's stage-1 row)", SPORTS_DUOREC, None, None),
    ("Sports, RaSeRec, published setting (issue 3)", SPORTS_DUOREC, "paper",
     {"test/hr@10": 0.0482, "test/ndcg@10": 0.0256}),
    ("Beauty, the default (BSA blocks, plateau lr decay), stage 1, seen items excluded (issue 16)", BEAUTY_DECAY, None,
     FIELD_MARK_BEAUTY),
    ("Beauty, the default (BSA blocks, plateau lr decay) + RaSeRec, calibrated seen-item offset, seen items excluded "
     "(issue 16)", BEAUTY_DECAY, "fastcal", {**FIELD_MARK_BEAUTY, **PAPER_BEAUTY}),
    ("Sports, the default (BSA blocks, plateau lr decay), stage 1, seen items excluded (issue 16)", SPORTS_DECAY, None,
     FIELD_MARK_SPORTS),
    ("Sports, the default (BSA blocks, plateau lr decay) + RaSeRec, calibrated seen-item offset, seen items excluded "
     "(issue 16)", SPORTS_DECAY, "fastcal", {**FIELD_MARK_SPORTS, **PAPER_SPORTS}),
    ("Beauty, the default + RaSeRec without a seen-item offset (`finetune.history_bias=none`), seen items excluded "
     "(issue 16)", BEAUTY_DECAY, "fast", {**FIELD_MARK_BEAUTY, **PAPER_BEAUTY}),
    ("Sports, the default + RaSeRec without a seen-item offset (`finetune.history_bias=none`), seen items excluded "
     "(issue 16)", SPORTS_DECAY, "fast", {**FIELD_MARK_SPORTS, **PAPER_SPORTS}),
    ("Beauty, the default + RaSeRec with the learned seen-item offset (`finetune.history_bias=learned`), seen items excluded "
     "(issue 16)", BEAUTY_DECAY, "fastseen", {**FIELD_MARK_BEAUTY, **PAPER_BEAUTY}),
    ("Sports, the default + RaSeRec with the learned seen-item offset (`finetune.history_bias=learned`), seen items excluded "
     "(issue 16)", SPORTS_DECAY, "fastseen", {**FIELD_MARK_SPORTS, **PAPER_SPORTS}),
    ("Beauty, BSA blocks, constant learning rate (the default until 2026-12-05), stage 1, seen items excluded (issue 16)", BEAUTY_BSA, None,
     FIELD_MARK_BEAUTY),
    # "fastsel" where the "fast" run predates finetune.encoder_fallback and would fall back (Beauty seed 2021)
    ("Beauty, BSA blocks, constant learning rate (the default until 2026-12-05) + RaSeRec, seen items excluded (issue 16)", BEAUTY_BSA,
     ("fastsel", "fast"), {**FIELD_MARK_BEAUTY, **PAPER_BEAUTY}),
    ("Sports, BSA blocks, constant learning rate (the default until 2026-12-05), stage 1, seen items excluded (issue 16)", SPORTS_BSA, None,
     FIELD_MARK_SPORTS),
    ("Sports, BSA blocks, constant learning rate (the default until 2026-12-05) + RaSeRec, seen items excluded (issue 16)", SPORTS_BSA,
     ("fastsel", "fast"), {**FIELD_MARK_SPORTS, **PAPER_SPORTS}),
    ("Beauty, the post-LN default, stage 1, seen items excluded (issue 16)", BEAUTY_FAST, None,
     FIELD_MARK_BEAUTY),
    ("Beauty, the post-LN default + RaSeRec, seen items excluded (issue 16)", BEAUTY_FAST, "fast",
     {**FIELD_MARK_BEAUTY, **PAPER_BEAUTY}),
    ("Sports, the post-LN default, stage 1, seen items excluded (issue 16)", SPORTS_FAST, None,
     FIELD_MARK_SPORTS),
    ("Sports, the post-LN default + RaSeRec, seen items excluded (issue 16)", SPORTS_FAST, "fast",
     {**FIELD_MARK_SPORTS, **PAPER_SPORTS}),
    ("Beauty, the post-LN default + RaSeRec with top-K 10, seen items excluded (issue 16)", BEAUTY_FAST,
     "fastk10", {**FIELD_MARK_BEAUTY, **PAPER_BEAUTY}),
    ("Sports, the post-LN default + RaSeRec with top-K 10, seen items excluded (issue 16)", SPORTS_FAST,
     "fastk10", {**FIELD_MARK_SPORTS, **PAPER_SPORTS}),
    ("Beauty, LiGR layers (`configs/fast_ligr.yaml`), stage 1, seen items excluded (issue 16)", BEAUTY_LIGR, None,
     FIELD_MARK_BEAUTY),
    ("Beauty, LiGR layers (`configs/fast_ligr.yaml`) + RaSeRec, seen items excluded (issue 16)", BEAUTY_LIGR, "fast",
     {**FIELD_MARK_BEAUTY, **PAPER_BEAUTY}),
    ("Sports, LiGR layers (`configs/fast_ligr.yaml`), stage 1, seen items excluded (issue 16)", SPORTS_LIGR, None,
     FIELD_MARK_SPORTS),
    ("Sports, LiGR layers (`configs/fast_ligr.yaml`) + RaSeRec, seen items excluded (issue 16)", SPORTS_LIGR, "fast",
     {**FIELD_MARK_SPORTS, **PAPER_SPORTS}),
]


def row(label: str, metrics: dict[str, float], extra: str = "", keys=KEYS) -> str:
    return f"| {label} | " + " | ".join(f"{metrics[k]:.4f}" for k in keys) + f" | {extra} |"


def kept_row(label: str, metrics: dict[str, float], extra: str = "") -> str:
    """The paper's protocol in the same table: HR@10 and NDCG@10 under the HR@10 and NDCG@10 columns."""
    cells = {k: "" for k in KEYS} | {"test/hr@10": f"{metrics[KEPT[0]]:.4f}", "test/ndcg@10": f"{metrics[KEPT[1]]:.4f}"}
    return f"| {label} | " + " | ".join(cells[k] for k in KEYS) + f" | {extra} |"


def recorded(base: str, variant: str | tuple[str, ...] | None, records: dict) -> str | None:
    """The run name of ``base`` under ``variant`` (the first one recorded, for a tuple), or None."""
    if variant is None:
        return base if base in records else None
    names = [f"{base}-raserec-{v}" for v in ((variant,) if isinstance(variant, str) else variant)]
    return next((n for n in names if n in records), None)


def group_table(title: str, runs: list[str], variant, mark: dict | None, stage1: dict, stage2: dict) -> str:
    records = stage2 if variant else stage1
    found = [(base, n) for base in runs if (n := recorded(base, variant, records)) is not None]
    lines = [f"### {title}", "", "| run | " + " | ".join(KEYS) + " | |", "|---|" + "---|" * (len(KEYS) + 1)]
    if not found:
        return "\n".join(lines + ["| (no seed recorded yet) |" + " |" * (len(KEYS) + 1), ""])
    per_seed = []
    for base, n in found:
        m = records[n]["metrics"]
        per_seed.append((base, m))
        lines.append(row(f"`{n}`", m))
    mean = {k: statistics.fmean(m[k] for _, m in per_seed) for k in KEYS}
    verdict = ""
    if mark:
        every = {**mean, **{k: statistics.fmean(m[k] for _, m in per_seed) for k in mark if k not in mean}}
        verdict = "marks: " + ", ".join(f"{k} {every[k]:.4f} {'≥' if every[k] >= v else '<'} {v}" for k, v in mark.items())
        if len(per_seed) < len(runs):
            verdict += f" so far ({len(per_seed)} of {len(runs)} seeds)"
    lines.append(row(f"**mean of {len(per_seed)}**", mean, verdict))
    if len(per_seed) > 1:
        lines.append(row("sample std", {k: statistics.stdev(m[k] for _, m in per_seed) for k in KEYS}))
    if all(KEPT[0] in m for _, m in per_seed):
        kept = {k: statistics.fmean(m[k] for _, m in per_seed) for k in KEPT}
        lines.append(kept_row(f"mean of {len(per_seed)}, seen items kept (paper's protocol)", kept))
    if variant:
        base_mean = {k: statistics.fmean(stage1[b]["metrics"][k] for b, _ in per_seed) for k in KEYS}
        lines.append(row("its encoders, same seeds", base_mean))
        lines.append("| gain over them | " + " | ".join(f"{gain(mean, base_mean, k):+.1f}%" for k in KEYS) + " | |")
    return "\n".join(lines + [""])


def main() -> int:
    stage1, stage2 = load_jsonl(STAGE1), load_jsonl(STAGE2)
    # --field: the groups of the default and of its LiGR-layer variant (RESULTS.md, "Field protocol")
    groups = [g for g in GROUPS if g[1] in FIELD] if "--field" in sys.argv[1:] else GROUPS
    print("\n".join(group_table(*g, stage1, stage2) for g in groups))
    return 0


if __name__ == "__main__":
    sys.exit(main())
