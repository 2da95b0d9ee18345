"""``protein-performer embed``: embed a FASTA file into HDF5, npz or a folder of ESM-style .pt files.

    protein-performer embed --checkpoint CKPT --fasta IN.fasta --out OUT.h5 [--layers -1] [--per-residue] [--quiet]

Rerunning with the same output skips proteins already there (resume); only an output that embed
wrote is resumed, any other existing file is refused and left as it is. One process at a time
writes an ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

from protein_performer.checkpoint import add_device_argument, weights_fingerprint
from protein_performer.cli_args import deprecated_alias
from protein_performer.corpus.fasta import add_unknown_argument
from protein_performer.embed.embedder import DEFAULT_TOKEN_BUDGET, DEFAULT_WINDOW_OVERLAP, Embedder
from protein_performer.embed.files import H5Writer, NpzWriter, PtDirWriter, open_writer, output_format
from protein_performer.embed.inputs import ProteinInput
from protein_performer.outputs import check_at_least, check_output, disk_full, locked, no_space
from protein_performer.progress import add_quiet_argument, from_args, progress_bar

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="ProteinLM checkpoint (.ckpt)")
    parser.add_argument("--fasta", required=True, type=Path,
                        help="FASTA or UniProt file (may be compressed); - reads standard input")
    parser.add_argument("--out", required=True, type=Path,
                        help="output: FILE.h5 (default), FILE.npz, or a directory of .pt files")
    parser.add_argument("--format", choices=("h5", "npz", "pt"), default=None,
                        help="output format (default: from the extension of --out; h5 otherwise)")
    parser.add_argument("--layers", type=int, nargs="+", default=[-1], metavar="K",
                        help="hidden states to write, numbered as ESM's repr_layers: 0 = the token embeddings, "
                             "k = the output of block k (1..depth, the block of attention --block k), negatives "
                             "from the end (default -1, the final layer)")
    parser.add_argument("--per-residue", action="store_true", help="also write (L, dim) states")
    parser.add_argument("--token-budget", type=int, default=DEFAULT_TOKEN_BUDGET,
                        help=f"padded tokens per batch (default {DEFAULT_TOKEN_BUDGET})")
    deprecated_alias(parser, parser.add_argument(
        "--window-residues", type=int, default=None, metavar="N",
        help="residues per window: longer proteins are embedded in overlapping windows of N residues "
             "(default: the token budget - 2)"), "--max-length")
    parser.add_argument("--window-overlap", type=int, default=None, metavar="N",
                        help=f"residues shared by consecutive windows (default min({DEFAULT_WINDOW_OVERLAP}, "
                             "window residues / 4))")
    add_unknown_argument(parser)
    add_device_argument(parser)
    add_quiet_argument(parser)


@dataclass
class EmbedStats:
    """Summary of one :func:`embed_to_file` run."""

    proteins: int = 0
    residues: int = 0
    windowed: int = 0
    skipped_existing: int = 0
    """Proteins already in the output (resume) or repeated ids."""
    seconds: float = 0.0

    def to_dict(self) -> dict:
        rate = max(self.seconds, 1e-9)
        return {**asdict(self), "proteins_per_s": self.proteins / rate, "residues_per_s": self.residues / rate}


def embed_to_file(embedder: Embedder, inputs: Iterable[ProteinInput], writer: H5Writer | NpzWriter | PtDirWriter,
                  progress: bool | None = False) -> EmbedStats:
    """Embed ``inputs`` not yet in ``writer``'s output and write them batch by batch; closes ``writer``.
    ``progress``: a bar on stderr (None: only on a terminal; :mod:`protein_performer.progress`)."""
    stats = EmbedStats()
    seen: set[str] = set()

    def todo() -> Iterator[ProteinInput]:
        for item in inputs:
            if item.id in seen or writer.has(item.id):
                stats.skipped_existing += 1
                continue
            seen.add(item.id)
            yield item

    start = time.perf_counter()
    bar = progress_bar(unit="proteins", desc="embed", enabled=progress)
    try:
        for batch in embedder.embed_iter(todo()):
            writer.write(batch)
            stats.proteins += len(batch)
            stats.residues += sum(len(p) for p in batch)
            stats.windowed += sum(p.windowed for p in batch)
            elapsed = max(time.perf_counter() - start, 1e-9)
            bar.update(len(batch))
            bar.set_postfix_str(f"{stats.proteins / elapsed:.1f} proteins/s, "
                                f"{stats.residues / elapsed:,.0f} residues/s")
    finally:
        bar.close()
        writer.close()
        stats.seconds = time.perf_counter() - start
    return stats


def run(args: argparse.Namespace) -> int:
    from protein_performer.corpus.fasta import input_file

    if str(args.fasta) != "-" and not args.fasta.exists():
        raise FileNotFoundError(f"{args.fasta}: no such input file")
    check_at_least(args, {"--token-budget": 3, "--window-residues": 1, "--window-overlap": 0})
    check_output(args.out, "dir" if output_format(args.out, args.format) == "pt" else "file",
                 inputs=[args.fasta, args.checkpoint])
    with locked(args.out), input_file(args.fasta) as fasta:  # standard input (-, /dev/stdin): a temporary file
        return _embed(args, fasta)


def _embed(args: argparse.Namespace, fasta: Path) -> int:
    """``run`` once the input is a file, ``fasta`` (``args.fasta`` names it in messages)."""
    from protein_performer.checkpoint import load_checkpoint
    from protein_performer.corpus.fasta import CleaningPolicy, ReadCounts, read_records

    loaded = load_checkpoint(args.checkpoint)
    embedder = Embedder(loaded.model, layers=args.layers, per_residue=args.per_residue,
                        token_budget=args.token_budget, window_residues=args.window_residues,
                        window_overlap=args.window_overlap, device=args.device)
    created = not args.out.exists()
    writer = open_writer(args.out, args.format, meta={
        "checkpoint": str(args.checkpoint), "layers": list(embedder.layers),
        "per_residue": embedder.per_residue, "max_length": embedder.window_residues,  # key of older outputs
        "window_overlap": embedder.window_overlap, "dim": loaded.config.dim,
        "weights": weights_fingerprint(loaded.model),  # a resumed output must come from the same model
    })
    counts = ReadCounts()
    inputs = (ProteinInput(r.id, r.sequence, r.header)
              for r in read_records(fasta, CleaningPolicy(unknown=args.unknown), counts))
    try:
        stats = embed_to_file(embedder, inputs, writer, progress=from_args(args))
        if counts.kept == 0:
            raise ValueError(f"no sequences in {args.fasta} ({counts.records_read} records read, skipped: "
                             f"{dict(counts.skipped) or 'none'}); check the input file")
    except BaseException as err:
        if created and not writer.keys:  # leave no empty output behind
            _remove_output(args.out)
        if disk_full(err):
            raise _no_space(args.out, writer) from err
        raise
    log.info("embedded %d proteins (%d residues, %d windowed) in %.1f s: %.1f proteins/s, %.0f residues/s; "
             "%d skipped (already in %s or repeated ids); input: %s", stats.proteins, stats.residues,
             stats.windowed, stats.seconds, stats.to_dict()["proteins_per_s"], stats.to_dict()["residues_per_s"],
             stats.skipped_existing, args.out, counts.to_dict())
    return 0


def _no_space(out: Path, writer: H5Writer | NpzWriter | PtDirWriter) -> OSError:
    """The error of a run whose disk filled up: what is kept of ``out`` and how to go on."""
    parts = getattr(writer, "parts", None)
    kept = parts if parts is not None and parts.exists() else out
    if not kept.exists():
        return no_space(out)
    return no_space(out, f"the {len(writer.keys)} proteins embedded before are kept in {kept} and a rerun resumes "
                         "from them")


def _remove_output(path: Path) -> None:
    """Remove an output this run created and left empty (a file, or a folder of .pt files)."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    log.debug("removed the empty output %s", path)
