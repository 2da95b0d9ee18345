"""``protein-performer attention``: one protein's attention map for one head (or the head average).

    protein-performer attention --checkpoint CKPT --fasta IN --id P0A7Z4 --block 2 --head 1 --out map.png

The map is ``<cls> sequence <eos>`` x the same (query rows x keys), computed ``--row-block``
query rows at a time; it is saved as CSV (``map.csv``, labelled ``position:token``) beside the PNG.
Neither file may exist already unless ``--overwrite`` is given; the suffix of ``--out`` must be an
image format matplotlib writes. Both are written together at the end (a failure or a full disk
leaves neither), and one process at a time writes an ``--out``.
FAVOR+ models show their implicit attention ``phi(q) . phi(k)`` normalised per row.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from protein_performer.alphabet import ALPHABET
from protein_performer.cli_args import deprecated_alias
from protein_performer.datasets import collate_proteins
from protein_performer.model import PerformerLM, layer_index

log = logging.getLogger(__name__)


@dataclass
class AttentionMap:
    """One protein's attention at one block: (L, L) weights of a head or the head average."""

    protein_id: str
    layer: int
    head: int | None
    """1-based head, ``None`` for the average over heads."""
    tokens: list[str]
    """``<cls>``, the residues, ``<eos>``."""
    weights: np.ndarray
    """(L, L), rows are queries; each row sums to 1."""

    @property
    def labels(self) -> list[str]:
        return [f"{i}:{t}" for i, t in enumerate(self.tokens)]

    def save_csv(self, path: str | Path) -> Path:
        import pandas as pd

        pd.DataFrame(self.weights, index=self.labels, columns=self.labels).to_csv(path, float_format="%.6g")
        return Path(path)


@torch.no_grad()
def attention_map(model: PerformerLM, protein_id: str, sequence: str, layer: int, head: int | None,
                  row_block: int = 256) -> AttentionMap:
    """Attention of block ``layer`` (1-based; negatives from the end) for ``head`` (1-based, None = mean)."""
    model.eval()
    block = layer_index(layer, model.config.depth, first=1)
    if head is not None and not 1 <= head <= model.config.heads:
        raise ValueError(f"--head {head} out of range: this model has heads 1..{model.config.heads} (or 'all')")
    device = next(model.parameters()).device
    tokens = ALPHABET.frame(sequence)  # (L,): <cls> residues <eos>
    batch = collate_proteins([tokens])
    ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)  # (1, L) x 2
    L = ids.shape[1]
    rows_out = []
    for start in range(0, L, row_block):
        rows = torch.arange(start, min(start + row_block, L), device=device)
        w = model(ids, mask, return_attention=[block], attention_rows=rows).attentions[block][0]  # (H, R, L)
        rows_out.append((w.mean(dim=0) if head is None else w[head - 1]).float().cpu().numpy())
    names = [ALPHABET.tokens[int(t)] for t in tokens]
    return AttentionMap(protein_id, block, head, names, np.concatenate(rows_out, axis=0))


def find_sequence(path: Path, protein_id: str, unknown: str = "x") -> tuple[str, str]:
    """``(header, sequence)`` of the record whose id (or entry name) is ``protein_id``."""
    from protein_performer.corpus.fasta import CleaningPolicy, read_records

    for rec in read_records(path, CleaningPolicy(unknown=unknown)):
        if protein_id in (rec.id, rec.name):
            return rec.header, rec.sequence
    raise ValueError(f"{path}: no record with id or entry name {protein_id!r}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="ProteinLM checkpoint (.ckpt)")
    parser.add_argument("--fasta", required=True, type=Path, help="FASTA / UniProt file holding the protein")
    parser.add_argument("--id", required=True, help="protein id (accession) or entry name")
    deprecated_alias(parser, parser.add_argument(
        "--block", type=int, default=-1, metavar="K",
        help="attention block, 1..depth (block K's output is embed's --layers K), negatives from the end "
             "(default -1, the last)"), "--layer")
    parser.add_argument("--head", default="all", help="head, 1-based, or 'all' for the head average (default all)")
    parser.add_argument("--out", required=True, type=Path, help="output PNG (a CSV of the weights is written beside it)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--row-block", type=int, default=256, help="query rows per block (default 256)")
    parser.add_argument("--device", default=None, help="cpu / cuda (default: cuda when available)")


def run(args: argparse.Namespace) -> int:
    import matplotlib.pyplot as plt
    from matplotlib.backend_bases import FigureCanvasBase

    from protein_performer.analysis.plots import attention_heatmap, save_figure
    from protein_performer.checkpoint import load_checkpoint
    from protein_performer.outputs import check_at_least, check_output, locked, side_file, written_into

    out = args.out if args.out.suffix else args.out.with_suffix(".png")
    image_format = out.suffix.lstrip(".").lower()
    formats = FigureCanvasBase.get_supported_filetypes()
    if image_format not in formats or image_format in ("raw", "rgba"):
        raise ValueError(f"--out {args.out}: .{image_format} is not an image format; end --out in .png, .svg or "
                         ".pdf (the weights go to a .csv beside it)")
    check_at_least(args, {"--row-block": 1})
    check_output(out, "file", inputs=[args.checkpoint, args.fasta], existing_ok=args.overwrite)
    csv_path = side_file(out, ".csv", inputs=[args.checkpoint, args.fasta], overwrite=args.overwrite)
    if args.head != "all" and not str(args.head).isdigit():
        raise ValueError(f"--head {args.head!r}: expected a 1-based head number or 'all'")
    head = None if args.head == "all" else int(args.head)
    with locked(out):
        loaded = load_checkpoint(args.checkpoint)
        model = loaded.model.to(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        _, sequence = find_sequence(args.fasta, args.id)
        amap = attention_map(model, args.id, sequence, args.block, head, args.row_block)
        who = "mean of heads" if head is None else f"head {head}"
        kind = "FAVOR+ implicit" if loaded.config.attention != "exact" else "exact"
        fig = attention_heatmap(amap.weights, amap.tokens,
                                title=f"{args.id}: block {amap.layer}, {who} ({kind} attention, L={len(amap.tokens)})")
        try:
            with written_into(out.parent, what=out.name) as stage:  # both files, or neither
                amap.save_csv(stage / csv_path.name)
                save_figure(fig, stage / out.name, formats=(image_format,))
        finally:
            plt.close(fig)
    log.info("wrote %s and %s", out, csv_path)
    return 0
