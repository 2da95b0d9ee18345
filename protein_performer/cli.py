"""``protein-performer``: the command line.

``fit``, ``validate`` and ``test`` are Lightning's own (``LightningCLI`` over
:class:`~protein_performer.lit.ProteinLM` and
:class:`~protein_performer.datamodule.ProteinDataModule`, configured by YAML files in
``configs/``). Every other subcommand lives in the module that does the work, which
exposes ``add_arguments(parser)`` and ``run(args) -> int``; this file only dispatches,
importing a command's module when that command runs so ``--help`` stays fast. Every command,
Lightning's included, reports bad input and faults in one line on stderr and exits with 1;
``-v`` adds the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("protein_performer.corpus.prepare", "tokenise FASTA / UniProt files into shards"),
    "fetch": ("protein_performer.corpus.fetch", "download a UniProt proteome or query (gzip FASTA)"),
    "score": ("protein_performer.score", "accuracy and perplexity of a checkpoint on a FASTA file"),
    "embed": ("protein_performer.embed", "embed proteins (HDF5, npz or ESM-style .pt files)"),
    "similarity": ("protein_performer.analysis.commands", "amino-acid similarity from attention vs BLOSUM62"),
    "attention": ("protein_performer.analysis.attention_map", "draw one protein's attention map"),
    "plot-embeddings": ("protein_performer.analysis.embedding_views", "PCA / t-SNE views and neighbours"),
    "convert": ("protein_performer.convert.esm", "turn ESM-2 weights (Hugging Face / fair-esm) into a checkpoint"),
    "generate": ("protein_performer.generate", "sample proteins from a causal model (constant-memory FAVOR+ state)"),
    "score-variants": ("protein_performer.variants", "zero-shot variant-effect scores of mutants (DMS CSV)"),
}


def _lightning_main(argv: Sequence[str]) -> int:
    from protein_performer.lit import run_lightning_cli

    run_lightning_cli(list(argv))
    return 0


def create_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="protein-performer",
        description="Protein language models with Performers (FAVOR+). "
        "Training: `protein-performer fit --config configs/demo.yaml` "
        "(also validate / test; see `protein-performer fit --help`).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in LIGHTNING_COMMANDS:
        sub.add_parser(name, help=f"Lightning {name} (LightningCLI; --config YAML)", add_help=False)
    for name, (module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in argv or "--verbose" in argv
    argv = [a for a in argv if a not in ("-v", "--verbose")]
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in (*LIGHTNING_COMMANDS, *COMMANDS):
        parser = create_parser()
        if argv and argv[0] not in ("-h", "--help"):
            parser.error(f"unknown command {argv[0]!r}")
        parser.print_help()
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    try:
        if name in LIGHTNING_COMMANDS:
            return _lightning_main(argv)
        module = importlib.import_module(COMMANDS[name][0])
        parser = argparse.ArgumentParser(prog=f"protein-performer {name}", description=COMMANDS[name][1])
        module.add_arguments(parser)
        args = parser.parse_args(rest)
        return int(module.run(args) or 0)
    except (ValueError, OSError, RuntimeError, EOFError) as err:
        # Bad input or a fault: one clear line, no traceback (use -v for the traceback).
        logging.getLogger("protein_performer").debug("traceback", exc_info=True)
        print(f"protein-performer {name}: error: {_one_line(err)}", file=sys.stderr)
        return 1


def _one_line(err: BaseException) -> str:
    """The message of ``err`` as one line (Lightning and torch wrap some in several)."""
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text or type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
