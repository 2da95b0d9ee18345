"""``protein-performer``: the command line.

``fit``, ``validate`` and ``test`` are Lightning's own (``LightningCLI`` over
:class:`~protein_performer.lit.ProteinLM` and
:class:`~protein_performer.datamodule.ProteinDataModule`, configured by the YAML files
shipped in the package, ``protein_performer/configs/``, which a checkout also reaches as ``configs/``).
Every other subcommand lives in the module that does the work, which
exposes ``add_arguments(parser)`` and ``run(args) -> int``; this file only dispatches,
importing a command's module when that command runs so ``--help`` stays fast. Every command,
Lightning's included, reports bad input and faults in one line on stderr and exits with 1;
``-v`` adds the traceback; a full disk is reported as ``no space left on <folder>``. Ctrl-C
(SIGINT) or SIGTERM stops the other commands with one line, ``interrupted``, and exit status 130
or 143, after their cleanup (no partial output files). Outputs follow one rule,
:mod:`protein_performer.outputs`; ``fit`` holds the lock of its ``trainer.default_root_dir``, so a
second ``fit`` into the same run folder is refused.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import signal
import sys
import threading
from importlib import resources
from pathlib import Path
from typing import Sequence

from protein_performer.allocator import keep_freed_memory

LIGHTNING_COMMANDS = ("fit", "validate", "test")
CONFIG_DIR = Path(str(resources.files("protein_performer") / "configs"))
"""The shipped YAML configs, package data of ``protein_performer`` (a folder in a checkout, an
editable install and an installed wheel alike; a checkout's ``configs/`` is a link to it)."""
BASE_CONFIG = CONFIG_DIR / "base.yaml"
"""What every ``fit``/``validate``/``test`` reads before its ``--config`` files: the shared recipe."""

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
    "homologs": ("protein_performer.corpus.homologs",
                 "find a protein's homologs with jackhmmer (pyhmmer) and write an A3M"),
    "paralogs": ("protein_performer.corpus.paralogs",
                 "split a proteome into families of paralogs (jackhmmer), one A3M each"),
    "benchmark": ("protein_performer.experiments.benchmark",
                  "many assays (ProteinGym reference CSV): per family recipe, fit, score; one table"),
}


def _launched_worker() -> bool:
    """Whether this process is a worker that a distributed launcher started (Lightning's DDP sets
    ``LOCAL_RANK`` / ``NODE_RANK`` in the processes it launches; the launcher itself has rank 0)."""
    import os

    return any(int(os.environ.get(name, "0") or 0) > 0 for name in ("LOCAL_RANK", "NODE_RANK", "RANK"))


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU multiplies bfloat16 natively (``avx512_bf16`` or ``amx_bf16`` among the
    flags of ``cpuinfo``) and torch's oneDNN can use it. False where there is no
    ``/proc/cpuinfo`` (not Linux): bf16 there is not known to be faster."""
    import torch

    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return False
    flags = {flag for line in lines if line.startswith("flags") for flag in line.split(":", 1)[-1].split()}
    return (bool(flags & {"avx512_bf16", "amx_bf16"}) and torch.backends.mkldnn.is_available()
            and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _on_cpu(accelerator: object) -> bool:
    """Whether ``trainer.accelerator`` (a name, ``auto``, or a class_path) trains on the CPU."""
    name = str(getattr(accelerator, "class_path", accelerator)).lower()
    if name == "auto":
        import torch

        return not torch.cuda.is_available() and not torch.backends.mps.is_available()
    return name == "cpu" or name.endswith("cpuaccelerator")


def resolve_precision(precision: object, accelerator: object, *, training: bool, cpu_bf16: bool) -> tuple[object, str]:
    """``trainer.precision`` and why. A precision set by a config or the command line stands. Unset
    (null, configs/base.yaml's): ``bf16-mixed`` when training on a CPU with native bf16, where the
    step is faster (``scripts/bench_train.py --precision`` measures by how much; FAVOR+ keeps its
    features, normaliser and prefix sums in float32 inside autocast); ``32-true`` for GPUs (set
    bf16-mixed there), for CPUs without bf16 (``cpu_bf16``: :func:`cpu_has_bf16`) and for
    validate/test."""
    if precision is not None:
        return precision, "set by the config or the command line"
    if not training:
        return "32-true", "evaluation runs in float32 (--trainer.precision to change)"
    if not _on_cpu(accelerator):
        return "32-true", "not set; on GPUs set --trainer.precision bf16-mixed"
    if cpu_bf16:
        return "bf16-mixed", "training on a CPU with native bf16 (avx512_bf16/amx_bf16); --trainer.precision to change"
    return "32-true", "training on a CPU without native bf16 (no avx512_bf16 or amx_bf16 flag)"


def packaged_config(value: str) -> str:
    """``--config demo`` names the shipped ``demo.yaml`` (in :data:`CONFIG_DIR`). A value with a
    folder or a suffix, or naming an existing file, is a path and stays as it is."""
    shipped = CONFIG_DIR / f"{value}.yaml"
    bare = bool(value) and Path(value).name == value and not Path(value).suffix
    if bare and not Path(value).exists() and shipped.is_file():
        return str(shipped)
    return value


def resolve_config_names(argv: Sequence[str]) -> list[str]:
    """``argv`` with every ``--config NAME`` / ``-c NAME`` / ``--config=NAME`` of a shipped config
    replaced by its path (:func:`packaged_config`)."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if i and argv[i - 1] in ("--config", "-c"):
            out.append(packaged_config(arg))
        elif arg.startswith("--config="):
            out.append("--config=" + packaged_config(arg.split("=", 1)[1]))
        else:
            out.append(arg)
    return out


def _lightning_main(argv: Sequence[str]) -> int:
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    try:
        run_lightning_cli(resolve_config_names(argv))
    except MisconfigurationException as err:  # a bad trainer setting, e.g. --trainer.max_steps -5
        raise ValueError(str(err)) from err
    return 0


def _topmost_missing(path: Path) -> Path:
    """The highest folder of ``path`` that does not exist yet (what a run would create)."""
    while not path.parent.exists():
        path = path.parent
    return path


def _under_root(root: str | None, path: str | None) -> str | None:
    """A relative ``path`` placed under ``root`` (``trainer.default_root_dir``); others unchanged."""
    return str(Path(root) / path) if root and path and not Path(path).is_absolute() else path


def _place_outputs(trainer) -> None:
    """In the parsed ``trainer`` section: relative ``save_dir`` of loggers and ``dirpath`` of
    checkpoint callbacks under ``default_root_dir``; a ``WandbLogger`` without a name named after
    its last folder."""
    root = trainer.get("default_root_dir")
    for logger in trainer.logger if isinstance(trainer.logger, list) else [trainer.logger]:
        if getattr(logger, "init_args", None) is None:
            continue
        if "save_dir" in logger.init_args:
            logger.init_args.save_dir = _under_root(root, logger.init_args.save_dir)
        if str(logger.class_path).endswith("WandbLogger") and root and not logger.init_args.get("name"):
            logger.init_args.name = Path(root).name
    for callback in trainer.get("callbacks") or []:
        if str(getattr(callback, "class_path", "")).endswith(("ModelCheckpoint", "LastStepCheckpoint")):
            callback.init_args.dirpath = _under_root(root, callback.init_args.get("dirpath"))


def _add_progress_bar(trainer) -> None:
    """:class:`~protein_performer.callbacks.StepProgressBar` among the parsed ``trainer`` section's
    callbacks, unless the bar is off or the callbacks name a progress bar."""
    from jsonargparse import Namespace

    callbacks = trainer.get("callbacks") or []
    if trainer.get("enable_progress_bar") is not False and not any(
            str(getattr(c, "class_path", "")).endswith("ProgressBar") for c in callbacks):
        trainer.callbacks = [*callbacks, Namespace(class_path="protein_performer.callbacks.StepProgressBar",
                                                   init_args=Namespace())]


def _complete_settings(config, subcommand: str | None) -> None:
    """What :class:`ProteinCLI` settles in the parsed ``config`` of ``subcommand`` before the model,
    data and trainer are built: former ``data`` keys renamed, the precision resolved (and logged),
    the run folder checked (``fit``), output folders placed under it, the progress bar, and
    ``weights_only`` loading of ``--ckpt_path`` by default."""
    from protein_performer.datamodule import rename_former_keys
    from protein_performer.outputs import check_output

    rename_former_keys(config.data)
    trainer = config.trainer
    training = subcommand in (None, "fit")
    trainer.precision, why = resolve_precision(trainer.get("precision"), trainer.get("accelerator", "auto"),
                                               training=training, cpu_bf16=cpu_has_bf16())
    logging.getLogger(__name__).info("precision %s: %s", trainer.precision, why)
    root = trainer.get("default_root_dir")
    if root and training:  # before the model and data are built
        check_output(Path(root), "dir", flag="--trainer.default_root_dir")
    _place_outputs(trainer)
    _add_progress_bar(trainer)
    if "weights_only" in config and config.weights_only is None:
        config.weights_only = True  # unpickle only tensors and plain types from --ckpt_path


def _output_dirs(trainer) -> list[Path]:
    """The folders a built ``trainer`` writes to: its root, its loggers' and its checkpoints'."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    dirs = [trainer.default_root_dir, *(lg.save_dir for lg in trainer.loggers if lg.save_dir)]
    dirs += [cb.dirpath for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath]
    return [Path(d) for d in dirs]


@functools.cache
def lightning_cli_class() -> type:
    """:class:`ProteinCLI`, protein_performer's ``LightningCLI``. It is built on first use so that the
    other commands (and ``--help``) never import Lightning, which takes seconds."""
    import shutil

    from pytorch_lightning.cli import LightningCLI

    from protein_performer.checkpoint import read_checkpoint_file
    from protein_performer.outputs import locked

    class ProteinCLI(LightningCLI):
        """``fit``, ``validate`` and ``test`` of a :class:`~protein_performer.lit.ProteinLM`.

        Settings start from :data:`BASE_CONFIG`. The data's objective follows the model's, and a
        ``data`` key under a former name (``data.max_length``) sets its new one, with a warning. An
        unset ``trainer.precision`` is resolved by :func:`resolve_precision` (logged). The progress
        bar is :class:`~protein_performer.callbacks.StepProgressBar` unless the callbacks name one.
        Relative ``save_dir`` of loggers and ``dirpath`` of checkpoint callbacks are placed under
        ``trainer.default_root_dir``, and a ``WandbLogger`` without a name is named after its last
        folder. The data and ``--ckpt_path`` are checked before anything is written, checkpoints
        given by ``--ckpt_path`` are read with ``weights_only`` unless ``--weights_only false``, and
        a run that fails before its first optimizer step removes the output folders it created.
        """

        @staticmethod
        def subcommands() -> dict[str, set[str]]:
            return {name: skip for name, skip in LightningCLI.subcommands().items() if name in LIGHTNING_COMMANDS}

        def add_arguments_to_parser(self, parser) -> None:
            # The model resolves its objective (from config.causal when not given); the data follows.
            parser.link_arguments("model.objective", "data.objective", apply_on="instantiate")

        def before_instantiate_classes(self) -> None:
            _complete_settings(self.config[self.subcommand] if self.subcommand else self.config, self.subcommand)

        def _parse_ckpt_path(self) -> None:
            # Lightning reads --ckpt_path first: check it (file named, safe loading) before it does.
            subcommand = self.config.get("subcommand")
            ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
            if ckpt_path and ckpt_path not in ("last", "best", "hpc", "registry"):
                read_checkpoint_file(ckpt_path, mmap=True)
            super()._parse_ckpt_path()

        def _run_subcommand(self, subcommand: str) -> None:
            root = self.config[subcommand].trainer.get("default_root_dir")
            if subcommand != "fit" or not root or _launched_worker():
                return self._run_checked(subcommand)  # a DDP worker runs under its launcher's lock
            # one fit at a time per run folder: a second would mix its checkpoints and logs into the first's
            with locked(Path(root), "--trainer.default_root_dir"):
                return self._run_checked(subcommand)

        def _run_checked(self, subcommand: str) -> None:
            self.datamodule.check(subcommand)  # before loggers or callbacks write anything
            fresh = {_topmost_missing(d) for d in _output_dirs(self.trainer) if not d.exists()}
            try:
                super()._run_subcommand(subcommand)
            except BaseException:
                if subcommand != "fit" or self.trainer.global_step == 0:
                    for folder in fresh:
                        shutil.rmtree(folder, ignore_errors=True)
                raise

    return ProteinCLI


def run_lightning_cli(args: list[str], run: bool = True):
    """``protein-performer fit|validate|test --config configs/X.yaml|X [overrides]``: the
    :class:`ProteinCLI` over :class:`~protein_performer.lit.ProteinLM` and
    :class:`~protein_performer.datamodule.ProteinDataModule`. With ``run=False`` (and no
    subcommand in ``args``) it only instantiates the model, data and trainer, and returns them.
    """
    from protein_performer.datamodule import ProteinDataModule
    from protein_performer.lit import ProteinLM

    if not BASE_CONFIG.is_file():
        raise FileNotFoundError(f"{BASE_CONFIG}: the base config is missing from the installed package "
                                "(package data protein_performer/configs/); reinstall protein-performer")
    base = {"default_config_files": [str(BASE_CONFIG)]}
    return lightning_cli_class()(
        ProteinLM,
        ProteinDataModule,
        args=None if args == sys.argv[1:] else args,
        run=run,
        parser_kwargs={name: base for name in LIGHTNING_COMMANDS} if run else base,
        save_config_kwargs={"overwrite": True},
        seed_everything_default=0,
        auto_configure_optimizers=False,
    )


def create_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="protein-performer",
        description="Protein language models with Performers (FAVOR+). "
        "Training: `protein-performer fit --config configs/demo.yaml` (or `--config demo`: "
        f"the configs shipped in {CONFIG_DIR}; also validate / test; see `protein-performer fit --help`).",
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
    keep_freed_memory()  # large tensors reuse freed memory instead of page-faulting in new memory
    try:
        if name in LIGHTNING_COMMANDS:
            return _lightning_main(argv)
        module = importlib.import_module(COMMANDS[name][0])
        parser = argparse.ArgumentParser(prog=f"protein-performer {name}", description=COMMANDS[name][1])
        module.add_arguments(parser)
        args = parser.parse_args(rest)
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None  # (Lightning has its own)
        try:
            return int(module.run(args) or 0)
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    except (ValueError, OSError, RuntimeError, EOFError) as err:
        # Bad input or a fault: one clear line, no traceback (use -v for the traceback).
        logging.getLogger("protein_performer").debug("traceback", exc_info=True)
        print(f"protein-performer {name}: error: {_one_line(_said_once(err))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM, after the command's own cleanup
        logging.getLogger("protein_performer").debug("traceback", exc_info=True)
        print(f"protein-performer {name}: interrupted", file=sys.stderr)
        return 143 if str(err) == "SIGTERM" else 130


def _interrupt(signum: int, frame) -> None:
    """SIGTERM raises ``KeyboardInterrupt('SIGTERM')``, so that cleanup runs as on Ctrl-C."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _said_once(err: BaseException) -> BaseException:
    """``err``, or for a full disk that its command did not already report as ``no space left on
    <folder>``: that message, with the folder of the file being written when the error names one."""
    from protein_performer.outputs import disk_full

    if not disk_full(err) or str(err).startswith("no space left on "):
        return err
    filename = getattr(err, "filename", None)
    where = Path(filename).resolve().parent if filename else "the device"
    return OSError(f"no space left on {where}; free some space or choose another output folder, then run again")


def _one_line(err: BaseException) -> str:
    """The message of ``err`` as one line (Lightning and torch wrap some in several)."""
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text or type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
