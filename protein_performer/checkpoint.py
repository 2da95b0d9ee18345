"""Loading trained models from Lightning checkpoints, safely (``weights_only=True``), without Lightning."""

from __future__ import annotations

import hashlib
import logging
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch

from protein_performer.alphabet import ALPHABET_VERSION
from protein_performer.model import PerformerConfig, PerformerLM

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    model: PerformerLM
    config: PerformerConfig
    objective: str
    """``mlm`` or ``clm``."""
    train_token_counts: torch.Tensor
    """Residue counts of the training split, by token id (zeros if unknown)."""
    path: Path


def weights_fingerprint(model: torch.nn.Module) -> str:
    """sha256 over the model's state (names, shapes, dtypes and values, in order): equal exactly
    when two models compute the same function, whatever file or path they were loaded from."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def default_device() -> str:
    """The ``--device`` default of every command: ``cuda`` when available, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def add_device_argument(parser) -> None:
    """``--device``, with the same default and help in every command that runs a model."""
    parser.add_argument("--device", default=None,
                        help="torch device: cpu, cuda, cuda:1, ... (default: cuda when available, else cpu)")


def read_checkpoint_file(path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict:
    """The checkpoint dictionary at ``path``, unpickling only tensors and plain types.

    Raises ``FileNotFoundError`` / ``ValueError`` naming the file and what to do; never advises
    unsafe loading (``weights_only=False`` can run code hidden in a checkpoint).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file (0 bytes), not a checkpoint; its writing was interrupted: "
                         "use another checkpoint (e.g. last.ckpt of the run) or train again")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a PyTorch checkpoint (truncated, or another kind of file); "
                         "copy it again or use another checkpoint")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        raise ValueError(f"{path}: holds Python objects other than tensors and plain types; protein_performer "
                         "loads only checkpoints without them (other objects could run code). Use a checkpoint "
                         "written by `protein-performer fit`") from err
    except Exception as err:  # torch reports damaged archives in many types
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise ValueError(f"{path}: damaged checkpoint ({type(err).__name__}: {reason}); "
                         "copy it again or use another checkpoint") from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a Lightning checkpoint (no state_dict); use one written by "
                         "`protein-performer fit`")
    return ckpt


def load_weights_only(path: str | Path, remedy: str, *, allow: Iterable[type] = (),
                      map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain types only (plus the classes in
    ``allow``), whatever torch's default. Errors are one ``ValueError`` line naming ``path`` and
    ending with ``remedy`` (what to do); they never pass on torch's advice to load unsafely."""
    path, allow = Path(path), list(allow)
    if allow and not hasattr(torch.serialization, "safe_globals"):  # torch < 2.5
        raise RuntimeError(f"{path}: reading it safely needs torch >= 2.5 (it holds {allow[0].__name__} "
                           f"objects), this is torch {torch.__version__}; upgrade torch, or {remedy}")
    try:
        if not allow:
            return torch.load(path, map_location=map_location, weights_only=True)
        with torch.serialization.safe_globals(allow):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        what = f" ({found.group(1)})" if found else ""
        raise ValueError(f"{path}: holds Python objects{what} other than tensors and plain types, which could "
                         f"run code when loaded, so it is not loaded; {remedy}") from err
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as err:  # torch reports damage in many types
        if isinstance(err, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise ValueError(f"{path}: truncated or damaged ({type(err).__name__}: {reason}); {remedy}") from err


def check_finite(state: dict[str, torch.Tensor], path: Path) -> None:
    """Raise ``ValueError`` when any floating-point tensor of ``state`` holds NaN or inf."""
    bad = total = 0
    for value in state.values():
        if torch.is_tensor(value) and value.is_floating_point():
            bad += int((~torch.isfinite(value)).sum())
            total += value.numel()
    if bad:
        raise ValueError(f"{path}: {bad:,} of {total:,} weights are NaN or infinite; the run that wrote it "
                         "diverged. Train again with a lower --model.lr (or more --model.warmup_steps)")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedModel:
    """Read a ``ProteinLM`` checkpoint into an eval-mode :class:`PerformerLM`.

    Raises ``FileNotFoundError`` / ``ValueError`` naming the file when it is missing, damaged,
    not a protein_performer checkpoint, made with another alphabet version, or holds
    non-finite weights.
    """
    path = Path(path)
    ckpt = read_checkpoint_file(path, map_location)
    if "performer_config" not in ckpt:
        raise ValueError(f"{path}: not a protein_performer checkpoint (no performer_config/state_dict)")
    version = ckpt.get("alphabet_version")
    if version != ALPHABET_VERSION:
        raise ValueError(f"{path}: alphabet version {version}, this protein_performer uses {ALPHABET_VERSION}")
    config = PerformerConfig(**ckpt["performer_config"])
    model = PerformerLM(config)
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    check_finite(state, path)
    model.load_state_dict(state)
    model.eval()
    counts = ckpt["state_dict"].get("train_token_counts", torch.zeros(config.vocab_size, dtype=torch.long))
    return LoadedModel(model=model, config=config, objective=ckpt.get("objective", "mlm"),
                       train_token_counts=counts, path=path)
