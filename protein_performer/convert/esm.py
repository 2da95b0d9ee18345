"""ESM-2 (Hugging Face ``transformers`` or ``fair-esm``) -> a protein_performer checkpoint.

    protein-performer convert --esm facebook/esm2_t12_35M_UR50D --out esm2_35M.ckpt
    protein-performer convert --esm esm2_t6_8M_UR50D.pt --out esm2_8M.ckpt --attention exact

ESM-2 is a pre-norm Transformer with rotary positions, like :class:`PerformerLM`; the weights
map one to one (q, k, v are stacked into ``qkv``; the LM head becomes ``lm_head="esm"``; the
output layer stays tied to the embeddings). Only the attention changes: ``--attention exact``
reproduces ESM to rounding error, ``softmax`` / ``relu`` swap in FAVOR+ with ``--nb-features``
random features, which ``fit --model.init_from`` can then fine-tune. ``--local-heads N`` makes the
first N heads of every layer exact softmax attention within ``--local-window`` residues and the
rest FAVOR+: the hybrid, which recovers an exact model's perplexity in the transfer study
(``docs/RESULTS.md`` section 3) where all-FAVOR+ does not.

Tokens: ESM's ``<cls>``, ``<pad>``, ``<eos>``, ``<unk>``, ``<mask>`` and 25 residue codes are
ours under the same names (``<cls>`` is our beginning-of-sequence); ESM's ``.``, ``-`` and
``<null_1>`` rows are dropped. The checkpoint records the source, this mapping and the config,
and loads with :func:`protein_performer.checkpoint.load_checkpoint` (``weights_only=True``).

Reading ESM (either library, refusing what is not ESM-2) is :mod:`.sources`, the one module that
imports ``transformers`` and ``fair-esm`` (``pip install 'protein-performer[esm]'``), inside functions.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor, nn

from protein_performer.alphabet import ALPHABET, ALPHABET_VERSION
from protein_performer.attention import KERNELS
from protein_performer.convert.sources import (
    ESM2_TOKENS,
    EsmModel,
    load_esm,
    read_fair_esm,
    read_transformers,
)
from protein_performer.model import PerformerConfig, PerformerLM
from protein_performer.outputs import check_output, side_file, written_atomically

__all__ = ["DROPPED_TOKENS", "ESM2_TOKENS", "Converted", "EsmModel", "add_arguments", "convert", "load_esm",
           "performer_config", "read_fair_esm", "read_transformers", "run", "save", "token_rows"]

log = logging.getLogger(__name__)

DROPPED_TOKENS = (".", "-", "<null_1>")
"""ESM tokens with no counterpart in our alphabet; their embedding and output rows are dropped."""


@dataclass
class Converted:
    """A converted model: what ``protein-performer convert`` saves."""

    config: PerformerConfig
    model: PerformerLM
    token_rows: list[int]
    """ESM token id of each of our token ids (the rows kept from ESM's embeddings and outputs)."""
    meta: dict[str, Any]
    """Source, library, token mapping and the source's configuration (plain types)."""

    def checkpoint(self) -> dict[str, Any]:
        """The checkpoint dictionary, in the layout ``protein-performer fit`` writes (plain types)."""
        state = {f"model.{k}": v.detach().clone().contiguous() for k, v in self.model.state_dict().items()}
        state["train_token_counts"] = torch.zeros(self.config.vocab_size, dtype=torch.long)
        return {
            "state_dict": state,
            "performer_config": self.config.to_dict(),
            "alphabet_version": ALPHABET_VERSION,
            "objective": "mlm",
            "hyper_parameters": {"config": self.config.to_dict(), "objective": "mlm"},
            "converted_from": self.meta,
        }


# ------------------------------------------------------------------------------------ conversion


def token_rows(tokens: tuple[str, ...], source: str = "ESM") -> list[int]:
    """ESM token id of each of our token ids; raises ``ValueError`` naming a token ESM lacks."""
    index = {t: i for i, t in enumerate(tokens)}
    missing = [t for t in ALPHABET.tokens if t not in index]
    if missing:
        raise ValueError(f"{source}: vocabulary lacks {missing}; not an ESM-2 vocabulary")
    return [index[t] for t in ALPHABET.tokens]


def performer_config(esm: EsmModel, attention: str = "softmax", nb_features: int = 256, local_heads: int = 0,
                     local_window: int = 16) -> PerformerConfig:
    """The :class:`PerformerConfig` that represents ``esm`` (with the chosen attention; the first
    ``local_heads`` heads exact within ``local_window`` residues)."""
    if local_heads and attention == "exact":
        raise ValueError("--local-heads makes a hybrid of local exact heads and FAVOR+ heads; with --attention "
                         "exact every head is exact already (use --attention softmax or relu)")
    if esm.ff_dim % esm.dim:
        raise ValueError(f"{esm.source}: feed-forward width {esm.ff_dim} is not a multiple of dim {esm.dim}")
    tied = esm.head_weight.data_ptr() == esm.embed.weight.data_ptr() or torch.equal(esm.head_weight,
                                                                                    esm.embed.weight)
    return PerformerConfig(
        vocab_size=len(ALPHABET), dim=esm.dim, depth=len(esm.layers), heads=esm.heads, ff_mult=esm.ff_dim // esm.dim,
        attention=attention, nb_features=nb_features, local_heads=local_heads, local_window=local_window,
        causal=False, position="rotary", dropout=0.0, tie_embeddings=tied, norm_eps=esm.norm_eps, lm_head="esm", token_dropout=esm.token_dropout,
        rotary_frequencies="float32",
    )


def _state(esm: EsmModel, rows: list[int]) -> dict[str, Tensor]:
    """Our parameter names -> ESM's tensors (vocabulary rows selected, q/k/v stacked)."""
    idx = torch.tensor(rows)

    def lin(name: str, m: nn.Module) -> dict[str, Tensor]:
        return {f"{name}.weight": m.weight, f"{name}.bias": m.bias}

    state = {"embed.weight": esm.embed.weight[idx], "lm_head.weight": esm.head_weight[idx],
             "lm_head.bias": esm.head_bias[idx], **lin("norm", esm.final_norm),
             **lin("head_transform.dense", esm.head_dense), **lin("head_transform.norm", esm.head_norm)}
    for i, layer in enumerate(esm.layers):
        p = f"blocks.{i}"
        for name, m in (("norm1", layer.norm1), ("norm2", layer.norm2), ("attn.out", layer.out),
                        ("ff.fc", layer.fc), ("ff.proj", layer.proj)):
            state.update(lin(f"{p}.{name}", m))
        state[f"{p}.attn.qkv.weight"] = torch.cat([layer.q.weight, layer.k.weight, layer.v.weight])  # (3 dim, dim)
        state[f"{p}.attn.qkv.bias"] = torch.cat([layer.q.bias, layer.k.bias, layer.v.bias])  # (3 dim,)
    return {k: v.detach().float() for k, v in state.items()}


def _check_all_used(esm: EsmModel) -> None:
    """Every parameter of the source model is converted, except the contact-prediction head."""
    used = {id(p) for m in (esm.embed, esm.final_norm, esm.head_dense, esm.head_norm, *[x for l in esm.layers for x in l])
            for p in m.parameters()} | {id(esm.head_weight), id(esm.head_bias)}
    unused = [n for n, p in esm.module.named_parameters() if id(p) not in used and "contact_head" not in n]
    if unused:
        raise ValueError(f"{esm.source}: weights this converter does not understand: {unused[:5]}"
                         f"{' ...' if len(unused) > 5 else ''}; only plain ESM-2 masked language models convert")


def convert(esm: EsmModel, attention: str = "softmax", nb_features: int = 256, local_heads: int = 0,
            local_window: int = 16) -> Converted:
    """ESM-2 -> an eval-mode :class:`PerformerLM` with ``attention`` (its FAVOR+ projections drawn
    from ``feature_seed``; the first ``local_heads`` heads exact within ``local_window`` residues),
    plus the record of what was done."""
    _check_all_used(esm)
    rows = token_rows(esm.tokens, esm.source)
    config = performer_config(esm, attention, nb_features, local_heads, local_window)
    model = PerformerLM(config)
    missing, unexpected = model.load_state_dict(_state(esm, rows), strict=False)
    missing = [k for k in missing if not k.endswith("attn.projection")]  # drawn from feature_seed
    if missing or unexpected:  # a bug here, not in the user's input
        raise RuntimeError(f"{esm.source}: conversion left {missing} unset and {unexpected} unused")
    meta = {
        "source": esm.source, "library": esm.library,
        "token_mapping": {t: esm.tokens[r] for t, r in zip(ALPHABET.tokens, rows)},
        "esm_token_ids": {t: r for t, r in zip(ALPHABET.tokens, rows)},
        "dropped_tokens": [t for i, t in enumerate(esm.tokens) if i not in set(rows)],
        "source_config": esm.details,
    }
    log.info("converted %s (%s): %d layers, dim %d, %d heads -> %s attention%s; dropped ESM tokens %s",
             esm.source, esm.library, config.depth, config.dim, config.heads, attention,
             (f" (m={nb_features})" if attention != "exact" else "")
             + (f", heads 1-{local_heads} exact within {local_window} residues" if local_heads else ""),
             meta["dropped_tokens"])
    return Converted(config=config, model=model.eval(), token_rows=rows, meta=meta)


def save(converted: Converted, out: str | Path, fit_yaml: str | Path | None = None) -> Path:
    """Write the checkpoint and a YAML beside it (``fit_yaml``, default ``out`` with ``.yaml``) with
    the ``model`` section for ``protein-performer fit --config BASE.yaml --config OUT.yaml``. Both are
    written atomically (temporary files, then renames): a failure or an interrupt leaves neither
    temporary file behind."""
    out = Path(out)
    fit_yaml = out.with_suffix(".yaml") if fit_yaml is None else Path(fit_yaml)
    text = (f"# `protein-performer fit --config demo --config {fit_yaml.name}` fine-tunes {out.name}\n"
            f"# (converted from {converted.meta['source']}); for CLM add "
            "--model.config.causal true (the objective follows)\n")
    text += yaml.safe_dump({"model": {"init_from": str(out), "config": converted.config.to_dict()}}, sort_keys=False)
    with written_atomically(out) as tmp_ckpt:
        with open(tmp_ckpt, "wb") as fh:  # a file object: a full disk raises OSError(ENOSPC), which
            torch.save(converted.checkpoint(), fh)  # written_atomically reports; a path gives "unexpected pos"
        with written_atomically(fit_yaml) as tmp_yaml:
            tmp_yaml.write_text(text)
    return out


# ------------------------------------------------------------------------------------ command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--esm", required=True, metavar="SOURCE",
                        help="Hugging Face model folder or hub id (facebook/esm2_t12_35M_UR50D), a fair-esm .pt "
                             "file, or a fair-esm model name (esm2_t12_35M_UR50D)")
    parser.add_argument("--out", required=True, type=Path, help="checkpoint to write (.ckpt); a fit YAML is "
                        "written beside it (same name, .yaml)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint and YAML")
    parser.add_argument("--attention", choices=sorted({kind for kind, _ in KERNELS}), default="softmax",
                        help="FAVOR+ softmax (default), FAVOR+ ReLU, or exact attention (reproduces ESM)")
    parser.add_argument("--nb-features", type=int, default=256, help="random features per head (default 256)")
    parser.add_argument("--local-heads", type=int, default=0, metavar="N",
                        help="the hybrid: the first N heads of every layer attend exactly within --local-window "
                             "residues, the others use --attention (default 0: none)")
    parser.add_argument("--local-window", type=int, default=16, metavar="W",
                        help="largest distance |t - s| a local head attends to (default 16)")


def run(args: argparse.Namespace) -> int:
    inputs = [Path(args.esm)] if Path(args.esm).exists() else []
    check_output(args.out, "file", inputs=inputs, existing_ok=args.overwrite)
    fit_yaml = side_file(args.out, ".yaml", inputs=inputs, overwrite=args.overwrite)
    if args.nb_features < 1:
        raise ValueError(f"--nb-features must be >= 1, got {args.nb_features}")
    converted = convert(load_esm(args.esm), args.attention, args.nb_features, args.local_heads, args.local_window)
    save(converted, args.out, fit_yaml)
    log.info("wrote %s and %s", args.out, fit_yaml)
    return 0
