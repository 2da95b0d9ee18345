"""The family recipe's choices, made from the family by a rule fixed before any assay result.

``make variants`` and ``protein-performer benchmark`` train one small model per family
(``configs/family_mlm.yaml``: its shape, learning rate and windows). What changes with the family
follows from it (:func:`family_recipe`), the same rule for every family:

1. **Held-out members.** ``valid_fraction = clip(100 / N, 0.05, 0.25)`` of N members (about 100
   held-out members when the family allows, never more than a quarter), no test split (the assay is
   the test). Members within ``split_identity`` of each other go whole to one split (similarity
   splits), and the query's group stays in training, so in a family of many close orthologs few
   members are eligible. When the held-out split holds less than half its share, the fraction is
   doubled (up to 0.25), then ``split_identity`` raised (0.8, 0.9, 0.95, 0.99), until it does.
   **Sequence weights** count neighbours within 0.8 identity (DeepSequence / EVE), or, when that
   leaves Neff below 100 (a family of near copies), the first of 0.9, 0.95, 0.99 that reaches it.
2. **Steps.** ``steps = clip(30 * T / W, 300, 3500)``: 30 passes over the family's weighted
   residues ``T = sum_i w_i * len_i`` of the training members, in windows of ``W`` tokens, at most
   the fixed recipe's 3,500 (13.4 minutes on 2 cores); the cosine schedule spans them.
3. **Early stopping.** Validation every ``max(50, steps // 10)`` steps on the held-out members;
   training stops after 3 validations without a new best, and the best checkpoint (on held-out
   loss) is the one scored.

The constants come from the fixed recipe that was chosen on TEM-1's held-out homologs (3,500 steps
is ~30 passes over TEM-1's weighted residues); the rule was written down before any other family
was trained or any assay scored with it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

IDENTITY_LADDER = (0.8, 0.9, 0.95, 0.99)
PASSES = 30
MIN_STEPS, MAX_STEPS = 300, 3500
PATIENCE = 3
MIN_NEFF = 100


def _held_out(family, base: float, wanted: float, notes: list[str]) -> tuple[float, float, np.ndarray, int]:
    """(split identity, valid fraction, splits, held-out members): the first setting, fraction
    before identity, whose validation split holds ``wanted`` members (the last tried otherwise)."""
    from protein_performer.corpus.families import similarity_splits

    fractions = sorted({min(0.25, base * 2**k) for k in range(4)})
    for split_identity in IDENTITY_LADDER:
        for fraction in fractions:
            splits = np.asarray(similarity_splits(family, split_identity=split_identity, valid_fraction=fraction,
                                                  test_fraction=0.0))
            held = int((splits == "valid").sum())
            if held >= wanted:
                return split_identity, fraction, splits, held
            notes.append(f"split identity {split_identity}, valid fraction {fraction:.3f}: {held} held out "
                         f"(< {wanted:.0f})")
    return split_identity, fraction, splits, held


@dataclass(frozen=True)
class FamilyRecipe:
    """What the rule chose for one family, and the facts it chose from."""

    members: int
    neff: float
    identity: float
    """Sequence weights: 1 / members within this identity."""
    split_identity: float
    """Held-out members are below this identity to every training member."""
    valid_fraction: float
    test_fraction: float
    held_out: int
    """Members in the validation split at that identity."""
    weighted_residues: float
    steps: int
    val_every: int
    patience: int
    window_tokens: int
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def split_args(self) -> list[str]:
        """The flags that give ``prepare --family`` and ``score-variants`` this recipe's weights and splits."""
        return ["--identity", str(self.identity), "--split-identity", str(self.split_identity),
                "--valid-fraction", str(self.valid_fraction), "--test-fraction", str(self.test_fraction)]


def family_recipe(path: Path, *, query: str | None = None, window_tokens: int = 8192, family=None) -> FamilyRecipe:
    """The rule of the module docstring applied to the homolog set at ``path`` (``family``: that set
    already read with :func:`read_family`'s default 0.8 identity; its weights are replaced)."""
    from protein_performer.corpus.families import read_family, sequence_weights

    if family is None:
        family = read_family(path, query=query, identity=IDENTITY_LADDER[0])
    n = len(family)
    notes = []
    identity = IDENTITY_LADDER[0]
    for identity in IDENTITY_LADDER:
        if identity != IDENTITY_LADDER[0]:
            family.weights = sequence_weights(family, identity)
        if family.weights.sum() >= MIN_NEFF:
            break
        notes.append(f"Neff {family.weights.sum():.1f} at weight identity {identity}")
    base = float(np.clip(100 / n, 0.05, 0.25))
    wanted = 0.5 * base * n
    split_identity, valid_fraction, splits, held = _held_out(family, base, wanted, notes)
    train = splits == "train"
    lengths = np.array([len(s) for s in family.sequences], dtype=float)
    residues = float((family.weights * lengths)[train].sum())
    steps = int(np.clip(math.ceil(PASSES * residues / window_tokens), MIN_STEPS, MAX_STEPS))
    recipe = FamilyRecipe(members=n, neff=round(float(family.weights.sum()), 2), identity=identity,
                          split_identity=split_identity,
                          valid_fraction=round(valid_fraction, 4), test_fraction=0.0, held_out=held,
                          weighted_residues=round(residues, 1), steps=steps, val_every=max(50, steps // 10),
                          patience=PATIENCE, window_tokens=window_tokens, notes=notes)
    log.info("%s: recipe: %d members, Neff %.1f at identity %.2f, %d held out (valid fraction %.3f, split identity "
             "%.2f), %.0f weighted residues -> %d steps, validation every %d, early stopping after %d without a new "
             "best", path, n, recipe.neff, identity, held, valid_fraction, split_identity, residues, steps,
             recipe.val_every, PATIENCE)
    return recipe


def fit_overrides(recipe: FamilyRecipe, base_callbacks: list[dict]) -> dict:
    """The ``fit`` config that applies ``recipe`` on top of the family config: steps, validation
    interval, warm-up, and the base callbacks plus early stopping on held-out loss."""
    callbacks = list(base_callbacks) + [{
        "class_path": "pytorch_lightning.callbacks.EarlyStopping",
        "init_args": {"monitor": "val/loss", "mode": "min", "patience": recipe.patience, "check_finite": True},
    }]
    return {"trainer": {"max_steps": recipe.steps, "val_check_interval": recipe.val_every, "callbacks": callbacks},
            "model": {"warmup_steps": min(50, max(1, recipe.steps // 10))}}
