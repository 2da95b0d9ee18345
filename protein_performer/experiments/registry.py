"""Named experiment variants: each is a config of ``configs/`` plus overrides, read the way users run it.

A :class:`Variant` names a config (``configs/<config>.yaml``, read after ``configs/base.yaml``) and
overrides in dotted form (``model.config.attention``), the same keys as the command line's
``--model.config.attention``. :func:`recipe` resolves one into a plain nested dict for reading its
settings; :func:`~protein_performer.experiments.runs.train_run` trains it through
:class:`~protein_performer.cli.ProteinCLI`. The demo recipe is configs/demo.yaml itself: nothing here
re-types it.

* :data:`VARIANTS` — the learning study's variants (``protein-performer`` users can train any of them:
  ``protein-performer fit --config configs/demo.yaml`` plus :func:`cli_overrides`);
* :func:`paper_model` — Table 2's models (the paper's three attentions and the hybrid) on any shape.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from protein_performer.attention.kernels import KERNELS
from protein_performer.cli import BASE_CONFIG


def config_path(name: str) -> Path:
    """The YAML file of config ``name`` (``demo``: configs/demo.yaml). The one place that says where
    configs live."""
    path = BASE_CONFIG.parent / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in BASE_CONFIG.parent.glob("*.yaml"))
        raise FileNotFoundError(f"{path}: no config named {name!r}; the configs are {known}")
    return path


@dataclass(frozen=True)
class Variant:
    """``configs/<config>.yaml`` with ``overrides`` (dotted keys: ``model.lr``, ``data.window_tokens``)."""

    config: str = "demo"
    overrides: dict[str, Any] = field(default_factory=dict)

    def with_overrides(self, **more: Any) -> Variant:
        """This variant with more overrides; keys use ``__`` for dots (``model__lr=1e-3``)."""
        return Variant(self.config, {**self.overrides, **{k.replace("__", "."): v for k, v in more.items()}})


def nest(dotted: dict[str, Any]) -> dict[str, Any]:
    """``{"model.config.dim": 8}`` -> ``{"model": {"config": {"dim": 8}}}``."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {key!r} goes below {part!r}, which is set to a value")
        node[leaf] = copy.deepcopy(value)
    return out


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, nested dicts merged key by key and anything else (lists too) replaced, as
    jsonargparse reads a later config file over an earlier one."""
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def recipe(variant: Variant) -> dict[str, Any]:
    """configs/base.yaml, then the variant's config, then its overrides, as one nested dict (to read a
    setting: ``recipe(v)["data"]["window_tokens"]``)."""
    merged = yaml.safe_load(BASE_CONFIG.read_text())
    for layer in (yaml.safe_load(config_path(variant.config).read_text()) or {}, nest(variant.overrides)):
        merged = _merge(merged, layer)
    return merged


def cli_overrides(overrides: dict[str, Any]) -> list[str]:
    """The command-line form of ``overrides`` (``--model.lr 0.001 ...``), for logs and for users."""
    return [part for key, value in overrides.items()
            for part in (f"--{key}", value if isinstance(value, str) else json.dumps(value))]


SOFTMAX = {"model.config.local_heads": 0}
"""configs/demo.yaml without its local heads: plain Performer-Softmax, the demo before the learning study."""

VARIANTS: dict[str, Variant] = {
    name: Variant("demo", {**SOFTMAX, **overrides}) for name, overrides in {
        "exact": {"model.config.attention": "exact"},
        "favor-softmax": {},
        "favor-relu": {"model.config.attention": "relu"},
        "hybrid": {"model.config.local_heads": 2, "model.config.local_window": 16},
        "conv": {"model.config.conv_width": 3},
        "hybrid+conv": {"model.config.local_heads": 2, "model.config.local_window": 16, "model.config.conv_width": 3},
        "hybrid-3local": {"model.config.local_heads": 3, "model.config.local_window": 16},
        "hybrid-3local+conv": {"model.config.local_heads": 3, "model.config.local_window": 16,
                               "model.config.conv_width": 3},
        "hybrid-w32": {"model.config.local_heads": 2, "model.config.local_window": 32},
        "hybrid-w8": {"model.config.local_heads": 2, "model.config.local_window": 8},
        "favor++": {"model.config.feature_map": "favor++"},
        # per-protein attention inside the concatenated windows
        "segments": {"model.config.segment_attention": True},
        # section 1 ablations of plain FAVOR+ (softmax)
        "m256": {"model.config.nb_features": 256},
        "m1024": {"model.config.nb_features": 1024},
        "hybrid-3local-w64": {"model.config.local_heads": 3, "model.config.local_window": 64},
        "sqrt_d": {"model.config.feature_scaling": "sqrt_d"},
        "redraw-never": {"model.redraw_interval": 0},
        "redraw-100": {"model.redraw_interval": 100},
        "heads8": {"model.config.heads": 8},
        "lr-2e-3": {"model.lr": 0.002},
        "lr-5e-4": {"model.lr": 0.0005},
    }.items()
}
"""The learning study's variants (``experiments.study``): each changes one thing of Performer-Softmax on
the demo recipe (2 x 128, 4 heads, m = 64; a cosine over the run, 30% masking, lr 1e-3)."""


def paper_model(attention: str, shape: dict[str, Any], local_window: int) -> dict[str, Any]:
    """``model.config`` overrides of Table 2's model ``attention`` at ``shape``: one attention of
    :data:`~protein_performer.attention.kernels.KERNELS` (``exact``, ``relu``, ``softmax``) in every head,
    or ``hybrid``: every head but one runs exact softmax attention
    within ``local_window`` residues, the last runs FAVOR+ (softmax) over the whole window."""
    if attention == "hybrid":
        return dict(shape, attention="softmax", local_heads=shape["heads"] - 1, local_window=local_window)
    kinds = sorted({kind for kind, _ in KERNELS})  # PerformerConfig.attention's values
    if attention not in kinds:
        raise ValueError(f"unknown Table 2 model {attention!r}; expected {', '.join(kinds)} or hybrid")
    return dict(shape, attention=attention, local_heads=0)
