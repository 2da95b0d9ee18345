"""How far a converted ESM-2 Performer (FAVOR+) is from the exact model, layer by layer.

Builds an ESM-2 of the esm2_t6_8M shape (dim 320, 6 layers, 20 heads) with *random* weights in
``transformers`` (nothing is downloaded), converts it with exact attention and with FAVOR+ at
m = 64, 256, 1024 random features, embeds the same random proteins with each, and reports per
layer the relative error ``|h_favor - h_exact| / |h_exact|`` (Frobenius, over real residues), and
for the output the relative logit error and the agreement of the top-1 prediction. Each FAVOR+
number is the mean over ``--draws`` feature draws. Weight settings: Hugging Face's
initialisation (std 0.02: nearly uniform attention) and the same plus N(0, s^2) noise on every
parameter (sharper attention); the table gives each setting's attention sharpness (the mean
largest exact attention weight of a query row, and the std of the scores q.k / sqrt(d)). Writes the marked block of docs/benchmarks/esm.md and a JSON beside.

    python scripts/esm_favor_gap.py [--draws 3] [--proteins 8]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from protein_performer.alphabet import ALPHABET, STANDARD_AMINO_ACIDS
from protein_performer.experiments.machine import machine_description, write_marked_block
from protein_performer.experiments.report.tables import md_table

log = logging.getLogger("esm_favor_gap")
DOC = Path("docs/benchmarks/esm.md")
"""The document the block goes into (relative to the working directory: run from the checkout's root)."""
SHAPE = dict(hidden_size=320, num_hidden_layers=6, num_attention_heads=20, intermediate_size=1280)
FEATURES = (64, 256, 1024)


@dataclass
class Gap:
    """One FAVOR+ model against the exact one (means over feature draws)."""

    weights: str
    nb_features: int
    layer_error: list[float]
    """Relative error of hidden states 1..depth (depth: the final, normed output)."""
    logit_error: float
    top1_agreement: float
    mean_embedding_error: float
    """Relative error of the per-protein mean of the final output."""
    max_weight: float
    """Sharpness of the exact model's attention: mean over rows of the largest weight."""
    score_std: float
    """Std of the exact model's attention scores q.k / sqrt(d) over real keys."""


def random_esm(noise: float):
    from transformers import EsmConfig, EsmForMaskedLM

    torch.manual_seed(0)
    config = EsmConfig(vocab_size=33, position_embedding_type="rotary", token_dropout=True, layer_norm_eps=1e-5,
                       pad_token_id=1, mask_token_id=32, emb_layer_norm_before=False, hidden_dropout_prob=0.0,
                       attention_probs_dropout_prob=0.0, max_position_embeddings=1026, **SHAPE)
    model = EsmForMaskedLM(config).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * noise)
    return model


def proteins(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, L) our token ids of random proteins (100-400 residues, framed and padded) and the real mask."""
    rng = np.random.default_rng(seed)
    letters = np.array(list(STANDARD_AMINO_ACIDS))
    seqs = ["".join(rng.choice(letters, size=int(k))) for k in rng.integers(100, 401, size=n)]
    ids = torch.full((n, max(map(len, seqs)) + 2), ALPHABET.pad_idx)
    for b, s in enumerate(seqs):
        ids[b, : len(s) + 2] = torch.tensor([ALPHABET.cls_idx, *ALPHABET.encode(s).tolist(), ALPHABET.eos_idx])
    return ids, ids != ALPHABET.pad_idx


def _rel(a: torch.Tensor, b: torch.Tensor, real: torch.Tensor) -> float:
    keep = real[..., None]
    return float(((a - b) * keep).norm() / (b * keep).norm())


def _mean_embedding(h: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    residues = (ids >= ALPHABET.standard_indices[0]).unsqueeze(-1)  # (B, L, 1): no specials, no padding
    return (h * residues).sum(1) / residues.sum(1)  # (B, dim)


@torch.no_grad()
def exactness(noise: float = 0.1, n_proteins: int = 4) -> list[dict]:
    """Exact-attention conversions against their sources on the same random proteins, padded, with
    ``<mask>`` tokens: the largest |ours - source| over real positions of the final hidden state and
    of the logits over shared tokens, and the source's largest |value|. fair-esm runs its softmax
    in float32 even in float64 models; that cast is removed here (as in tests/test_convert.py)."""
    import esm
    import esm.multihead_attention as mha
    from esm.model.esm2 import ESM2

    from protein_performer.convert.esm import convert, read_fair_esm, read_transformers

    mha.utils_softmax = lambda x, dim, onnx_trace=False: torch.softmax(x, dim=dim)
    ids, real = proteins(n_proteins, seed=1)
    ids[:, 5:40:7] = ALPHABET.mask_idx  # a few <mask> tokens in every row (token dropout rescales)
    depth = SHAPE["num_hidden_layers"]
    rows = []
    for library in ("transformers", "fair-esm"):
        for dtype in (torch.float32, torch.float64):
            if library == "transformers":
                source = random_esm(noise)
                converted = convert(read_transformers(source, "random"), "exact")
            else:
                torch.manual_seed(0)
                alphabet = esm.data.Alphabet.from_architecture("ESM-1b")
                source = ESM2(num_layers=depth, embed_dim=SHAPE["hidden_size"],
                              attention_heads=SHAPE["num_attention_heads"], alphabet=alphabet).eval()
                g = torch.Generator().manual_seed(1)
                for prm in source.parameters():
                    prm.add_(torch.randn(prm.shape, generator=g) * noise)
                converted = convert(read_fair_esm(source, alphabet, "random"), "exact")
            source, model = source.to(dtype), converted.model.to(dtype)
            esm_ids = torch.tensor(converted.token_rows)[ids]  # our ids -> ESM's
            out = model(ids, real, return_layers=[depth])
            if library == "transformers":
                hidden = source.esm(esm_ids, attention_mask=real.long()).last_hidden_state
                logits = source(esm_ids, attention_mask=real.long()).logits
            else:
                ref = source(esm_ids, repr_layers=[depth])
                hidden, logits = ref["representations"][depth], ref["logits"]
            keep = real[..., None]
            rows.append({"library": library, "dtype": str(dtype).removeprefix("torch."),
                         "hidden_error": float(((out.hidden_states[depth] - hidden).abs() * keep).max()),
                         "hidden_scale": float((hidden.abs() * keep).max()),
                         "logit_error": float(((out.logits - logits[..., converted.token_rows]).abs() * keep).max()),
                         "logit_scale": float((logits.abs() * keep).max())})
            log.info("exactness %s", rows[-1])
    return rows


@torch.no_grad()
def sharpness(model, ids: torch.Tensor, real: torch.Tensor) -> tuple[float, float]:
    """(mean largest attention weight of a real query row, std of the scores q.k / sqrt(d)), over
    every layer and head of an exact-attention model, on (B, L) ``ids``."""
    out = model(ids, real, return_attention=True)
    pair = (real[:, None, :, None] & real[:, None, None, :])  # (B, 1, L, L) real query and key
    w = torch.stack(list(out.attentions.values()))  # (depth, B, H, L, L)
    top = w.amax(-1)[:, real[:, None, :].expand(-1, w.shape[2], -1)]  # real query rows
    scores = torch.log(w.clamp_min(1e-30))  # log-softmax: the scores up to a per-row constant
    centred = scores - (scores * pair).sum(-1, keepdim=True) / pair.sum(-1, keepdim=True)
    return float(top.mean()), float(centred[pair.expand_as(centred)].std())


@torch.no_grad()
def measure(weights: str, noise: float, draws: int, n_proteins: int) -> list[Gap]:
    from protein_performer.convert.esm import convert, read_transformers

    source = read_transformers(random_esm(noise), f"random esm2_t6_8M-shaped ({weights})")
    ids, real = proteins(n_proteins)
    depth = SHAPE["num_hidden_layers"]
    layers = range(1, depth + 1)
    exact_model = convert(source, "exact").model
    exact = exact_model(ids, real, return_layers=layers)
    max_weight, score_std = sharpness(exact_model, ids[:2], real[:2])
    gaps = []
    for m in FEATURES:
        per_draw = []
        model = convert(source, "softmax", nb_features=m).model
        for draw in range(draws):
            model.redraw_features(torch.Generator().manual_seed(1000 + draw))
            out = model(ids, real, return_layers=layers)
            top1 = (out.logits.argmax(-1) == exact.logits.argmax(-1))[real].float().mean()
            per_draw.append([*[_rel(out.hidden_states[i], exact.hidden_states[i], real) for i in layers],
                             _rel(out.logits, exact.logits, real), float(top1),
                             float((_mean_embedding(out.hidden_states[depth], ids)
                                    - _mean_embedding(exact.hidden_states[depth], ids)).norm()
                                   / _mean_embedding(exact.hidden_states[depth], ids).norm())])
        mean = np.mean(per_draw, axis=0).tolist()
        gaps.append(Gap(weights, m, mean[:depth], mean[depth], mean[depth + 1], mean[depth + 2], max_weight,
                        score_std))
        log.info("%s m=%d: layers %s, logits %.3g, top-1 %.3f", weights, m,
                 " ".join(f"{e:.3g}" for e in mean[:depth]), mean[depth], mean[depth + 1])
    return gaps


def render(exact: list[dict], gaps: list[Gap], draws: int, n_proteins: int, machine: str) -> str:
    """The marked block of docs/benchmarks/esm.md, from the measurements alone."""
    depth = len(gaps[0].layer_error)
    lines = [f"Machine: {machine}. Random weights throughout (no pretrained ESM weights were downloaded).", "",
             "**Exact attention** (`--attention exact`), esm2_t6_8M shape, every parameter of the random model "
             "perturbed by N(0, 0.1^2); 4 padded random proteins with `<mask>` tokens:", "",
             md_table(["source", "dtype", "max abs error, final hidden state", "its max abs value",
                       "max abs error, logits (shared tokens)", "their max abs value"],
                      [[r["library"], r["dtype"], f"{r['hidden_error']:.2g}", f"{r['hidden_scale']:.3g}",
                        f"{r['logit_error']:.2g}", f"{r['logit_scale']:.3g}"] for r in exact])]
    lines += ["", "**FAVOR+** (`--attention softmax`) against the exact conversion of the same weights:", ""]
    head = ["weights", "max weight", "score std", "m", *[f"layer {i}" for i in range(1, depth + 1)], "mean embedding", "logits",
            "top-1 agreement"]
    lines += [f"Random weights, esm2_t6_8M shape ({SHAPE['hidden_size']} dim, {depth} layers, "
             f"{SHAPE['num_attention_heads']} heads); {n_proteins} random proteins of 100-400 residues; "
             f"means over {draws} feature draws. Max weight and score std describe the exact model's "
             "attention (all layers and heads, 2 proteins). Relative errors |favor - exact| / |exact| "
             f"(layer {depth} is the final, normed output).", "",
             md_table(head, [[g.weights, f"{g.max_weight:.3f}", f"{g.score_std:.2f}", str(g.nb_features),
                              *[f"{e:.3f}" for e in g.layer_error], f"{g.mean_embedding_error:.3f}",
                              f"{g.logit_error:.3f}", f"{g.top1_agreement:.3f}"] for g in gaps])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=3, help="feature draws per m (default 3)")
    parser.add_argument("--proteins", type=int, default=8, help="random proteins (default 8)")
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    logging.getLogger("protein_performer.convert.esm").setLevel(logging.WARNING)
    gaps = [g for weights, noise in (("HF init", 0.0), ("+ N(0, 0.02^2)", 0.02), ("+ N(0, 0.05^2)", 0.05),
                                     ("+ N(0, 0.1^2)", 0.1))
            for g in measure(weights, noise, args.draws, args.proteins)]
    exact = exactness()
    block = render(exact, gaps, args.draws, args.proteins, machine_description())
    write_marked_block(args.doc, block, "esm-favor-gap", "Converted ESM-2 models")
    results = {"exactness": exact, "favor_gap": [g.__dict__ for g in gaps]}
    args.doc.with_name("esm_favor_gap.json").write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
