"""Tables and figures of the learning study (:mod:`protein_performer.experiments.study`, computed from
its saved runs), and the analyses of its saved models: how well FAVOR+ estimates a trained exact model's
attention, where the models attend, and their amino-acid similarity against BLOSUM62.

The report is a pure function of ``outputs/study/*/*.json``: every number in
``docs/benchmarks/learning.md`` comes from those files.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from protein_performer.experiments.report.tables import md_table

log = logging.getLogger(__name__)

TAG_TITLES = {
    "l512": "L = 512, equal steps (the demo recipe: 1,600 steps, batch 8)",
    "l512-wall": "L = 512, equal wall clock",
    "l8192": "L = 8192, equal wall clock",
}


def load_runs(root: Path) -> dict[str, list[dict]]:
    """tag -> runs (the JSON records), in the order they were written."""
    runs: dict[str, list[dict]] = {}
    for path in sorted(root.glob("*/*.json"), key=lambda p: p.stat().st_mtime):
        record = json.loads(path.read_text())
        if "variant" in record:
            runs.setdefault(record["tag"], []).append(record)
    return runs


def _ci(pair) -> str:
    return "" if pair is None else f"[{pair[0]:+.2f}, {pair[1]:+.2f}]"


def _ratio_ci(pair) -> str:
    return "" if pair is None else f"[{pair[0]:.4f}, {pair[1]:.4f}]"


def run_table(runs: list[dict], speeds: dict[str, float] | None = None) -> str:
    """One row per variant: steps, seconds, test perplexity and accuracy against both baselines.
    ``speeds``: seconds per step measured alone (``study_learning.py speed``), else the run's own."""
    exact = next((r for r in runs if r["variant"] == "exact"), None)
    speeds = speeds or {}
    body = []
    for r in runs:
        t = r["test"]
        rel = f"{t['perplexity'] / exact['test']['perplexity']:.4f}" if exact else ""
        own = speeds.get(r["variant"])
        pace = f"{own / speeds['exact']:.2f}" if own and speeds.get("exact") else ""
        body.append([
            r["variant"], f"{r['steps']:,}", f"{r['train_seconds']:.0f}", pace, f"{t['perplexity']:.3f}", rel,
            f"{t['perplexity_ratio']:.4f} {_ratio_ci(t['perplexity_ratio_ci95'])}",
            f"{t.get('context_perplexity_ratio') or float('nan'):.4f} "
            f"{_ratio_ci(t.get('context_perplexity_ratio_ci95'))}",
            f"{100 * t['accuracy']:.2f}", f"{t['accuracy_gain']:+.2f} {_ci(t['accuracy_gain_ci95'])}",
            f"{t.get('context_accuracy_gain') or float('nan'):+.2f} {_ci(t.get('context_accuracy_gain_ci95'))}"])
    return md_table(["variant", "steps", "train s", "s/step (alone) / exact", "test ppl", "/ exact",
                     "/ unigram [95% CI]", "/ n-gram [95% CI]", "acc. %", "gain vs unigram, points [CI]",
                     "gain vs n-gram, points [CI]"], body, align="lrrrrrllrll")


def baselines_line(runs: list[dict]) -> str:
    t = runs[0]["test"]
    return (f"Baselines on the same hidden residues ({t['tokens']:,} over {t['passes']} masks of {t['windows']} "
            f"test windows): unigram {t['unigram_perplexity']:.3f} / {100 * t['unigram_accuracy']:.2f}%, "
            f"neighbour n-gram {t['context_perplexity']:.3f} / {100 * t['context_accuracy']:.2f}%.")


def curve_figure(runs: list[dict], path: Path, title: str) -> Path:
    """Validation perplexity against optimizer steps (equal-steps runs) or against the training
    seconds the run took (equal-wall-clock runs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    colours = plt.get_cmap("tab20").colors
    timed = any(r.get("budget_seconds") for r in runs)
    for i, r in enumerate(runs):
        curve = np.asarray(r["curve"], dtype=float)
        if len(curve):
            x = curve[:, 1] if timed else curve[:, 0]
            ax.plot(x, np.exp(curve[:, 2]), marker="o", ms=3, color=colours[i % 20], label=r["variant"],
                    ls="-" if i < 10 else "--")
    t = runs[0]["test"]
    ax.axhline(t["unigram_perplexity"], color="grey", ls=":", lw=1, label="unigram (test)")
    ax.axhline(t["context_perplexity"], color="black", ls="--", lw=1, label="neighbour n-gram (test)")
    ax.set_xlabel("training seconds (validation excluded)" if timed else "optimizer steps")
    ax.set_ylabel("validation perplexity (15% hidden)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def approximation_table(path: Path) -> str:
    rows = json.loads(path.read_text())
    return md_table(["layer", "m", "mean TV distance, all rows", "sharp rows (max weight > 0.3): share", "TV",
                     "mass within ±3, exact", "FAVOR+"],
                    [[r["layer"], r["m"], f"{r['tv_all']:.3f}", f"{r['sharp_share']:.2%}", f"{r['tv_sharp']:.3f}",
                      f"{r['local_exact']:.3f}", f"{r['local_favor']:.3f}"] for r in rows], align="rrrrrrr")


def transfer_table(path: Path) -> str:
    saved = json.loads(path.read_text())
    source = saved["rows"][0]["zero_shot"]["perplexity"]
    body = []
    for r in saved["rows"]:
        z = r["zero_shot"]["perplexity"]
        row = [r["variant"], f"{z:.3f}", f"{z / source - 1:+.1%}", "", "", ""]
        if "fine_tuned" in r:
            a = r["fine_tuned"]["perplexity"]
            share = f"{(z - a) / (z - source):.0%}" if z > source else "n/a"
            row[3:] = [f"{a:.3f} ({r['steps']} steps)", f"{a / source - 1:+.1%}", share]
        body.append(row)
    table = md_table(["variant", "zero-shot perplexity", "vs exact", "fine-tuned perplexity", "vs exact",
                      "share of the loss recovered"], body, align="lrrrrr")
    return (f"`{saved['weights']}` (the equal-steps exact model), scored on the {saved['split']} split "
            f"({saved['passes']} mask{'s' if saved['passes'] > 1 else ''}). Fine-tuning: lr "
            f"{next((r['lr'] for r in saved['rows'] if 'lr' in r), float('nan')):g}, no warm-up, a cosine over the steps.\n\n" + table)


def write_report(root: Path, docs: Path) -> Path:
    from protein_performer.experiments.machine import (
        machine_description,
        write_marked_block,
    )

    runs = load_runs(root)
    parts = [f"Machine: {machine_description()}. Generated by `python scripts/study_learning.py report` "
             "from `outputs/study/*/*.json`."]
    for tag, tag_runs in runs.items():
        r0 = tag_runs[0]
        speed_file = root / f"speed-L{r0['length']}.json"
        speeds = json.loads(speed_file.read_text())["seconds_per_step"] if speed_file.exists() else None
        fig = curve_figure(tag_runs, docs / "figures" / f"learning_{tag}.png", TAG_TITLES.get(tag, tag))
        pace = ("" if speeds is None else
                f" Seconds per step measured alone, interleaved: {', '.join(f'{v} {t:.3f}' for v, t in speeds.items())}.")
        parts.append(f"### {TAG_TITLES.get(tag, tag)}\n\nWindows of {r0['length']}, batch {r0['batch_size']}, seed "
                     f"{r0['seed']}, {r0['threads']} torch thread(s). {baselines_line(tag_runs)}{pace}\n\n"
                     f"{run_table(tag_runs, speeds)}\n\n![{tag}](../figures/{fig.name})")
    approx = root / "approx.json"
    if approx.exists():
        parts.append("### How well FAVOR+ estimates a trained exact model's attention\n\n"
                     "Same q and k (validation windows of 512), the exact softmax rows against FAVOR+'s "
                     "implicit weights; TV = total-variation distance per row; sharp rows have a largest "
                     "weight above 0.3.\n\n" + approximation_table(approx))
    moved = root / "transfer.json"
    if moved.exists():
        parts.append("### The exact model's weights in a Performer (transfer)\n\n"
                     "`python scripts/study_learning.py transfer --weights outputs/study/l512/exact.pt`: "
                     + transfer_table(moved))
    similarity = root / "similarity.json"
    if similarity.exists():
        rows = json.loads(similarity.read_text())
        parts.append(f"### Amino-acid similarity vs BLOSUM62 (Pearson over 190 pairs, {rows[0]['proteins']} test "
                     "proteins)\n\n" + similarity_table(similarity))
    locality = root / "locality.json"
    if locality.exists():
        parts.append("### Where the trained models attend\n\nValidation windows of 512; uniform attention "
                     "would put 0.014 within ±3 positions, at a mean distance of about 171.\n\n"
                     + locality_table(locality))
    out = docs / "benchmarks" / "learning.md"
    write_marked_block(out, "\n\n".join(parts), "study", "What Performers learn per step and per CPU-second")
    return out


def load_weights(path: Path):
    """A study model saved by ``study run`` (``outputs/study/TAG/VARIANT.pt``), in eval mode."""
    from protein_performer.model import PerformerConfig, PerformerLM

    saved = torch.load(path, weights_only=True)
    model = PerformerLM(PerformerConfig(**saved["performer_config"])).eval()
    model.load_state_dict(saved["state_dict"])
    return model


def _valid_windows(data_dir: Path, n: int = 8, length: int = 512) -> torch.Tensor:
    from protein_performer.corpus.shards import open_split
    from protein_performer.datasets import windows_from_sequences

    valid = open_split(data_dir, "valid")
    windows = windows_from_sequences([np.asarray(valid.protein(i)) for i in range(len(valid))], length)
    return torch.from_numpy(np.stack([w for w in windows if len(w) == length][:n]).astype(np.int64))  # (B, L)


@torch.no_grad()
def locality_study(args) -> Path:
    """Per saved model, layer and head: the attention mass within 3 positions of the query and the
    mean attention distance, on validation windows (uniform attention over 512: 0.014 and ~171).
    Writes outputs/study/locality.json."""
    ids = _valid_windows(args.data_dir)
    L = ids.shape[1]
    distance = (torch.arange(L)[None, :] - torch.arange(L)[:, None]).abs().float()  # (L, L)
    rows = []
    for path in args.weights:
        model = load_weights(path)
        out = model(ids, return_attention=True)
        for layer, w in out.attentions.items():  # (B, H, L, L)
            for h in range(w.shape[1]):
                wh = w[:, h]
                rows.append({"model": Path(path).stem, "layer": layer, "head": h + 1,
                             "kind": "local" if h < model.config.local_heads else model.config.attention,
                             "mass_within_3": float((wh * (distance <= 3)).sum(-1).mean()),
                             "mean_distance": float((wh * distance).sum(-1).mean())})
    out_path = Path(args.weights[0]).parents[1] / "locality.json"
    out_path.write_text(json.dumps(rows, indent=1) + "\n")
    return out_path


@torch.no_grad()
def similarity_study(args) -> Path:
    """Attention-derived amino-acid similarity vs BLOSUM62 (profile and pair methods) and the
    embedding similarity, for each saved model and for an untrained model of the same config
    (the control), on the test split's proteins. Writes outputs/study/similarity.json."""
    from protein_performer.alphabet import ALPHABET
    from protein_performer.analysis.similarity import analyse
    from protein_performer.corpus.shards import open_split
    from protein_performer.model import PerformerLM

    test = open_split(args.data_dir, "test")
    proteins = [ALPHABET.decode(np.asarray(test.protein(i))) for i in range(min(len(test), args.max_proteins))]
    rows = []
    for path in args.weights:
        trained = load_weights(path)
        torch.manual_seed(0)
        for label, model in (("trained", trained), ("untrained", PerformerLM(trained.config).eval())):
            result = analyse(model, proteins)
            rows.append({"model": Path(path).stem, "state": label, "proteins": len(proteins),
                         "profiles": result.attention_vs_blosum.pearson, "pairs": result.pairs_vs_blosum.pearson,
                         "context": result.context_vs_blosum.pearson, "embedding": result.embedding_vs_blosum.pearson,
                         "context_top": [p for p, _, _ in result.context_vs_blosum.top_pairs[:5]],
                         "context_landmark_ranks": result.context_vs_blosum.landmark_ranks,
                         "pairs_top": [p for p, _, _ in result.pairs_vs_blosum.top_pairs[:5]],
                         "pairs_landmark_ranks": result.pairs_vs_blosum.landmark_ranks})
            log.info("%s %s: profiles %.3f pairs %.3f contexts %.3f embedding %.3f", rows[-1]["model"], label,
                     rows[-1]["profiles"], rows[-1]["pairs"], rows[-1]["context"], rows[-1]["embedding"])
    out = Path(args.weights[0]).parents[1] / "similarity.json"
    out.write_text(json.dumps(rows, indent=1) + "\n")
    return out


def similarity_table(path: Path) -> str:
    rows = json.loads(path.read_text())
    return md_table(["model", "weights", "attention profiles (Vig et al.)", "attention pairs (log-odds)",
                     "attention contexts", "token embeddings", "top pairs (contexts)",
                     "ranks of D-E F-Y I-V K-R (contexts, of 190)"],
                    [[r["model"], r["state"], f"{r['profiles']:.3f}", f"{r['pairs']:.3f}", f"{r['context']:.3f}",
                      f"{r['embedding']:.3f}", " ".join(r["context_top"]),
                      " ".join(str(v) for v in r["context_landmark_ranks"].values())] for r in rows], align="llrrrrll")


def locality_table(path: Path) -> str:
    rows = json.loads(path.read_text())
    return md_table(["model", "layer", "head", "kind", "mass within ±3", "mean distance"],
                    [[r["model"], r["layer"], r["head"], r["kind"], f"{r['mass_within_3']:.3f}",
                      f"{r['mean_distance']:.1f}"] for r in rows], align="lrrlrr")


@torch.no_grad()
def approximation_study(args) -> Path:
    """Per layer of a trained exact model: its attention rows against FAVOR+'s estimate of them
    (same q and k, m random features), on validation windows. Writes outputs/study/approx.json."""
    from protein_performer.attention import (
        favor_attention_weights,
        gaussian_orthogonal_matrix,
    )
    from protein_performer.attention.rotary import apply_rotary

    model = load_weights(args.weights)
    ids = _valid_windows(args.data_dir)
    captured: dict[int, torch.Tensor] = {}
    hooks = [block.attn.register_forward_pre_hook(lambda mod, a, kw, i=i: captured.__setitem__(i, a[0]),
                                                  with_kwargs=True)
             for i, block in enumerate(model.blocks, start=1)]
    model(ids)
    for h in hooks:
        h.remove()
    rows = []
    L = ids.shape[1]
    rotary = model.rotary(L, device=ids.device, dtype=torch.float32) if model.rotary is not None else None
    near = (torch.arange(L)[None, :] - torch.arange(L)[:, None]).abs() <= 3  # (L, L)
    for i, block in enumerate(model.blocks, start=1):
        x = captured[i]
        B = x.shape[0]
        attn = block.attn
        q, k, _ = attn.qkv(x).view(B, L, 3, attn.heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        exact = ((q @ k.transpose(-2, -1)) * attn.head_dim**-0.5).softmax(-1)  # (B, H, L, L)
        sharp = exact.amax(-1) > 0.3  # (B, H, L)
        for m in args.features:
            w = gaussian_orthogonal_matrix(m, attn.head_dim, generator=torch.Generator().manual_seed(m))
            est = favor_attention_weights(q, k, w)
            tv = 0.5 * (est - exact).abs().sum(-1)  # (B, H, L)
            rows.append({
                "layer": i, "m": m, "tv_all": float(tv.mean()), "sharp_share": float(sharp.float().mean()),
                "tv_sharp": float(tv[sharp].mean()) if sharp.any() else float("nan"),
                "local_exact": float((exact * near).sum(-1).mean()), "local_favor": float((est * near).sum(-1).mean()),
            })
            log.info("layer %d m=%d: TV %.3f (sharp rows %.3f), mass within 3: exact %.3f favor %.3f", i, m,
                     rows[-1]["tv_all"], rows[-1]["tv_sharp"], rows[-1]["local_exact"], rows[-1]["local_favor"])
    out = Path(args.weights).parents[1] / "approx.json"
    out.write_text(json.dumps(rows, indent=1) + "\n")
    return out
