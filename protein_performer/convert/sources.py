"""Reading ESM-2 from Hugging Face ``transformers`` or ``fair-esm`` into one layout, :class:`EsmModel`.

:func:`load_esm` takes what the user names (a Hugging Face folder or hub id, a fair-esm ``.pt``
file or a fair-esm model name) and refuses what is not a plain ESM-2 masked language model, in
one line that names the source; :mod:`.esm` converts the result. ``transformers`` and
``fair-esm`` (``pip install 'protein-performer[esm]'``) are imported only here, inside functions.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, NamedTuple

import torch
from torch import Tensor, nn

from protein_performer.checkpoint import load_weights_only

log = logging.getLogger(__name__)

ESM2_TOKENS: tuple[str, ...] = (
    "<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K",
    "Q", "N", "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z", "O", ".", "-", "<null_1>", "<mask>",
)
"""ESM-2's vocabulary by token id (fair-esm's "ESM-1b" alphabet, also the Hugging Face models')."""
FAIR_ESM_NAME = re.compile(r"^esm2_t\d+_\d+[MB]_UR50D$")
"""A fair-esm model name (downloaded by fair-esm into torch hub's cache)."""
_WARN_INSTALL = "install the optional dependencies with: pip install 'protein-performer[esm]'"


class _Layer(NamedTuple):
    """One ESM-2 block's modules, whichever library holds them."""

    norm1: nn.LayerNorm
    q: nn.Linear
    k: nn.Linear
    v: nn.Linear
    out: nn.Linear
    norm2: nn.LayerNorm
    fc: nn.Linear
    proj: nn.Linear


@dataclass
class EsmModel:
    """An ESM-2 model read from either library, in one layout."""

    source: str
    """What the user named: a folder, hub id, ``.pt`` file or fair-esm model name."""
    library: Literal["transformers", "fair-esm"]
    tokens: tuple[str, ...]
    """ESM's vocabulary by id."""
    heads: int
    ff_dim: int
    norm_eps: float
    token_dropout: bool
    embed: nn.Embedding
    layers: list[_Layer]
    final_norm: nn.LayerNorm
    head_dense: nn.Linear
    head_norm: nn.LayerNorm
    head_weight: Tensor
    """(vocab, dim) output layer (the embeddings, when tied)."""
    head_bias: Tensor
    module: nn.Module = field(repr=False)
    """The library's model, kept for checks of which weights were used."""
    details: dict[str, Any] = field(default_factory=dict)
    """The source's own configuration (plain types), recorded in the checkpoint."""

    @property
    def dim(self) -> int:
        return self.embed.weight.shape[1]



def _import(name: str):
    try:
        return __import__(name, fromlist=["_"])
    except ImportError as err:
        raise RuntimeError(f"converting ESM models needs the '{name.split('.')[0]}' package; {_WARN_INSTALL}") from err


def read_transformers(model: nn.Module, source: str, tokens: tuple[str, ...] | None = None) -> EsmModel:
    """An ``EsmForMaskedLM`` (any weights) as an :class:`EsmModel`; ``tokens`` default to ESM-2's."""
    cfg = model.config
    problems = []
    if getattr(cfg, "position_embedding_type", "absolute") != "rotary":
        problems.append(f"position_embedding_type={cfg.position_embedding_type!r} (ESM-1b / ESM-1v); only "
                        "ESM-2 (rotary) models convert")
    if getattr(cfg, "emb_layer_norm_before", False):
        problems.append("emb_layer_norm_before=True (ESM-1b style)")
    if getattr(cfg, "is_decoder", False):
        problems.append("is_decoder=True")
    if getattr(cfg, "hidden_act", "gelu") != "gelu":
        problems.append(f"hidden_act={cfg.hidden_act!r} (need 'gelu')")
    if float(getattr(cfg, "rope_theta", 10000.0)) != 10000.0:
        problems.append(f"rope_theta={cfg.rope_theta} (need 10000)")
    if problems:
        raise ValueError(f"{source}: not convertible: {'; '.join(problems)}")
    tokens = tokens or _default_tokens(source, cfg.vocab_size, cfg.pad_token_id, cfg.mask_token_id)
    esm, head = model.esm, model.lm_head
    layers = [_Layer(l.attention.LayerNorm, l.attention.self.query, l.attention.self.key, l.attention.self.value,
                     l.attention.output.dense, l.LayerNorm, l.intermediate.dense, l.output.dense)
              for l in esm.encoder.layer]
    details = {k: v for k, v in cfg.to_dict().items() if isinstance(v, (int, float, str, bool, type(None)))}
    return EsmModel(
        source=source, library="transformers", tokens=tokens, heads=cfg.num_attention_heads,
        ff_dim=cfg.intermediate_size, norm_eps=float(cfg.layer_norm_eps), token_dropout=bool(cfg.token_dropout),
        embed=esm.embeddings.word_embeddings, layers=layers, final_norm=esm.encoder.emb_layer_norm_after,
        head_dense=head.dense, head_norm=head.layer_norm, head_weight=head.decoder.weight, head_bias=head.bias,
        module=model, details=details,
    )


def _default_tokens(source: str, vocab_size: int, pad_id: int | None, mask_id: int | None) -> tuple[str, ...]:
    if vocab_size != len(ESM2_TOKENS) or pad_id != 1 or mask_id != 32:
        raise ValueError(f"{source}: vocabulary of {vocab_size} tokens (pad {pad_id}, mask {mask_id}) is not "
                         f"ESM-2's 33 (pad 1, mask 32) and no tokenizer was found beside the model")
    return ESM2_TOKENS


def read_fair_esm(model: nn.Module, alphabet: Any, source: str) -> EsmModel:
    """A fair-esm ``ESM2`` and its alphabet as an :class:`EsmModel`."""
    pretrained_esm2 = _import("esm.model.esm2").ESM2
    if not isinstance(model, pretrained_esm2):
        raise ValueError(f"{source}: a fair-esm {type(model).__name__}, not ESM2; only ESM-2 models convert")
    layers = [_Layer(l.self_attn_layer_norm, l.self_attn.q_proj, l.self_attn.k_proj, l.self_attn.v_proj,
                     l.self_attn.out_proj, l.final_layer_norm, l.fc1, l.fc2) for l in model.layers]
    if any(l.self_attn.bias_k is not None for l in model.layers):
        raise ValueError(f"{source}: attention with bias_k/bias_v is not ESM-2's; not convertible")
    head = model.lm_head
    return EsmModel(
        source=source, library="fair-esm", tokens=tuple(alphabet.all_toks), heads=model.attention_heads,
        ff_dim=model.layers[0].fc1.out_features, norm_eps=float(model.emb_layer_norm_after.eps),
        token_dropout=bool(model.token_dropout), embed=model.embed_tokens, layers=layers,
        final_norm=model.emb_layer_norm_after, head_dense=head.dense, head_norm=head.layer_norm,
        head_weight=head.weight, head_bias=head.bias, module=model,
        details={"num_layers": model.num_layers, "embed_dim": model.embed_dim,
                 "attention_heads": model.attention_heads, "token_dropout": bool(model.token_dropout)},
    )


def load_esm(source: str) -> EsmModel:
    """Read ESM-2 from a Hugging Face folder or hub id, a fair-esm ``.pt`` file or a fair-esm name.

    Hugging Face sources go through ``EsmForMaskedLM.from_pretrained`` (the user's cache and
    ``HF_HUB_OFFLINE`` apply; no progress bars). fair-esm files are read here with
    ``torch.load(weights_only=True)`` (never fair-esm's own loader, which unpickles anything on
    torch < 2.6 and for hub downloads) and built by ``esm.pretrained.load_model_and_alphabet_core``;
    fair-esm names are looked up in (and downloaded to) torch hub's cache as fair-esm does.
    """
    path = Path(source)
    if path.is_file():
        if path.suffix != ".pt":
            raise ValueError(f"{source}: a file, but not a fair-esm .pt file; pass a .pt file, a Hugging Face "
                             "model folder or hub id (e.g. facebook/esm2_t6_8M_UR50D)")
        return read_fair_esm(*_read_fair_esm_file(source, path), source)
    if FAIR_ESM_NAME.match(source):
        return read_fair_esm(*_read_fair_esm_file(source, _fair_esm_download(source)), source)
    if not path.is_dir() and ("/" not in source or source.startswith(("/", ".", "~"))):
        raise FileNotFoundError(f"{source}: no such file or folder, and not a hub id (owner/name) or fair-esm "
                                "model name (esm2_t6_8M_UR50D ...)")
    transformers = _import("transformers")
    with _quiet_transformers(transformers):
        model = _read_hf_weights(transformers, source)
        tokens = None
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(source)
            vocab = tokenizer.get_vocab()
            tokens = tuple(sorted(vocab, key=vocab.get))
        except Exception as err:  # no tokenizer files (the error type varies by version): ESM-2's vocabulary is
            # assumed, and checked against the model's vocabulary size and pad / mask ids
            log.info("%s: no tokenizer (%s); assuming ESM-2's vocabulary", source, type(err).__name__)
    return read_transformers(model.eval(), source, tokens)


@contextmanager
def _quiet_transformers(transformers) -> Iterator[None]:
    """No loading bars (they would fill a piped or logged stderr) and no warning tables from
    ``transformers`` (what they say is reported in one line); both settings restored afterwards."""
    verbosity = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()


def _read_hf_weights(transformers, source: str) -> nn.Module:
    """``EsmForMaskedLM.from_pretrained(source)``, refusing what it would only warn about (weights
    missing from the files, which it initialises at random, or left unused) and reporting unreadable
    files in one line that names them (and never advises unsafe loading)."""
    from safetensors import SafetensorError

    try:
        model, info = transformers.EsmForMaskedLM.from_pretrained(source, output_loading_info=True)
    except OSError as err:
        raise OSError(f"{source}: cannot load a Hugging Face ESM model ({str(err).splitlines()[0]}); check the "
                      "name, the network, or HF_HUB_OFFLINE and the cache") from err
    except SafetensorError as err:
        raise ValueError(f"{source}: model.safetensors is truncated or damaged ({err}); download or copy the "
                         "model again") from err
    except pickle.UnpicklingError as err:
        raise ValueError(f"{source}: pytorch_model.bin holds Python objects that are not safe to load (they could "
                         "run code); convert a copy with model.safetensors instead") from err
    missing = [k for k in info.get("missing_keys", ()) if "contact_head" not in k]
    unexpected = [k for k in info.get("unexpected_keys", ()) if "contact_head" not in k]
    mismatched = [k for k, *_ in info.get("mismatched_keys", ())]
    problems = [f"{what}: {_some(keys)}" for what, keys in (
        ("missing (they would be random)", missing), ("not part of ESM-2", unexpected),
        ("of the wrong shape", mismatched)) if keys]
    if problems:
        raise ValueError(f"{source}: the weight files do not match the model's config.json; weights "
                         f"{'; '.join(problems)}. Download or copy the model again")
    return model


def _some(keys: list[str], show: int = 5) -> str:
    """Up to ``show`` sorted names of ``keys`` and how many more there are."""
    keys = sorted(keys)
    return ", ".join(keys[:show]) + (f" (and {len(keys) - show} more)" if len(keys) > show else "")


_FAIR_ESM_URL = "https://dl.fbaipublicfiles.com/fair-esm"
"""Where fair-esm downloads its models (``models/NAME.pt``, ``regression/NAME-contact-regression.pt``)."""
_USE_HF = "convert the Hugging Face copy instead, e.g. --esm facebook/esm2_t6_8M_UR50D"


def _fair_esm_download(name: str) -> Path:
    """The fair-esm model ``name`` in torch hub's cache (``TORCH_HOME``), downloaded there first
    when missing, as fair-esm does, with its contact-regression file (only downloaded, not run)."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    model = folder / f"{name}.pt"
    for file, url in ((model, f"{_FAIR_ESM_URL}/models/{name}.pt"),
                      (folder / f"{name}-contact-regression.pt", f"{_FAIR_ESM_URL}/regression/{name}-contact-regression.pt")):
        if not file.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            try:
                torch.hub.download_url_to_file(url, str(file), progress=False)
            except Exception as err:  # urllib reports no network, a bad name (404) and the rest in many types
                raise OSError(f"{name}: cannot download {url} into {folder} ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}); check the name and the network, "
                              f"or {_USE_HF}") from err
    return model


def _read_fair_esm_file(source: str, path: Path) -> tuple[nn.Module, Any]:
    """A fair-esm ESM-2 ``.pt`` file (and its ``-contact-regression.pt`` file beside it, when there)
    as fair-esm's model and alphabet, read with ``weights_only`` (its configs are
    ``argparse.Namespace`` objects, the one class allowed). The layout is told by the content, not
    the file name: ESM-1 files (ESM-1b, ESM-1v, MSA Transformer: an ``args`` entry) are refused."""
    pretrained = _import("esm.pretrained")
    data = load_weights_only(path, _USE_HF, allow=[argparse.Namespace])
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ValueError(f"{source}: not a fair-esm model file (no 'model' weights); pass a fair-esm ESM-2 .pt "
                         f"file or {_USE_HF}")
    if "cfg" not in data:
        arch = getattr(data.get("args"), "arch", None)
        raise ValueError(f"{source}: a fair-esm ESM-1 model (ESM-1b, ESM-1v or MSA Transformer"
                         f"{f'; arch {arch!r}' if arch else ''}), not ESM-2; only ESM-2 models convert, e.g. "
                         "--esm esm2_t33_650M_UR50D")
    regression_file = path.with_name(f"{path.stem}-contact-regression.pt")
    regression = None
    if regression_file.is_file():  # the contact head is not converted; read only for fair-esm's key checks
        regression = load_weights_only(regression_file, _USE_HF, allow=[argparse.Namespace])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "regression weights not found": the contact head is not converted
            model, alphabet = pretrained.load_model_and_alphabet_core("esm2", data, regression)
    except (RuntimeError, KeyError, AttributeError, TypeError) as err:
        reason = " ".join(str(err).split())[:300]
        raise ValueError(f"{source}: not a complete fair-esm ESM-2 model file ({type(err).__name__}: {reason}); "
                         "download or copy it again") from err
    return model.eval(), alphabet
