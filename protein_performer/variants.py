"""``protein-performer score-variants``: zero-shot variant-effect scores (ESM-1v / ProteinGym style).

Mutants are written as in ESM's ``predict.py``: ``H24C`` is wild-type H at position 24 replaced by
C, positions numbered from ``--offset-idx`` (the number of the sequence's first residue);
``H24C:A30G`` is a multi-mutant, scored as the sum over its substitutions (as ProteinGym does).

Scores (higher = predicted fitter), by model kind and strategy:

* masked, ``masked-marginals`` (default): mask each mutated position in the wild type and sum
  ``log p(mutant letter) - log p(wild-type letter)`` there (one forward per mutated position);
* masked, ``wt-marginals``: the same differences read from one unmasked pass over the wild type;
* masked, ``pseudo-ppl``: pseudo-log-likelihood (every position masked in turn) of the mutant
  sequence minus the wild type's; one forward per residue per mutant, so slow; only on request;
* causal: ``log p(mutant sequence) - log p(wild type)``, every token after ``<cls>`` (and ``<eos>``)
  predicted from its prefix.

Proteins longer than ``--max-length`` tokens are cut into overlapping windows (stride half a
window) and every position is read from the window that gives it the most context (masked: the
one it is nearest the centre of; causal: the one with the longest prefix), never truncated.

Baselines: BLOSUM62 (``B[wt, mut]`` summed over a multi-mutant) and the unigram log-ratio
(``log u(mut) - log u(wt)`` with u the residue frequencies of the checkpoint's training split, or
of the wild type when the checkpoint does not record them). With ``--score-col`` every score gets
a Spearman correlation with the measurements and a 95% percentile-bootstrap interval over rows.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch

from protein_performer.alphabet import ALPHABET, STANDARD_AMINO_ACIDS
from protein_performer.model import PerformerLM

log = logging.getLogger(__name__)

Strategy = Literal["masked-marginals", "wt-marginals", "pseudo-ppl"]
STRATEGIES: tuple[str, ...] = ("masked-marginals", "wt-marginals", "pseudo-ppl")
_MUTANT = re.compile(r"^([A-Za-z])(-?\d+)([A-Za-z])$")


@dataclass(frozen=True)
class Substitution:
    """One amino-acid change; ``index`` is 0-based in the wild-type sequence."""

    wt: str
    index: int
    mt: str


class InvalidVariant(ValueError):
    """A row that cannot be scored; the message names the problem and the fix."""


def parse_mutant(text: str, sequence: str, offset: int) -> tuple[Substitution, ...]:
    """``'H24C:A30G'`` -> substitutions, checked against ``sequence`` numbered from ``offset``.

    Raises :class:`InvalidVariant` for an unparsable mutant, an unknown letter, a position out of
    range, a wild-type letter that does not match, or a position mutated twice.
    """
    text = text.strip()
    if not text:
        raise InvalidVariant("empty mutant; write it as H24C (wild type, position, mutant)")
    subs = []
    for part in text.split(":"):
        m = _MUTANT.match(part.strip())
        if m is None:
            raise InvalidVariant(f"{part!r} is not a substitution like H24C (wild-type letter, position, mutant "
                                 "letter; multi-mutants joined by ':'); correct the mutant")
        wt, number, mt = m.group(1).upper(), int(m.group(2)), m.group(3).upper()
        for letter in (wt, mt):
            if letter not in STANDARD_AMINO_ACIDS:
                raise InvalidVariant(f"{letter!r} in {part!r} is not one of the 20 standard amino acids "
                                     f"{STANDARD_AMINO_ACIDS}; correct the mutant")
        index = number - offset
        if not 0 <= index < len(sequence):
            raise InvalidVariant(f"position {number} of {part!r} is outside the sequence (positions {offset}.."
                                 f"{offset + len(sequence) - 1} with --offset-idx {offset}); check --offset-idx "
                                 "(the number of the sequence's first residue) and the --fasta")
        if sequence[index] != wt:
            raise InvalidVariant(f"wild-type letter {wt} of {part!r} does not match the sequence, which has "
                                 f"{sequence[index]} at position {number} (--offset-idx {offset}); check "
                                 "--offset-idx and that --fasta is this assay's wild type")
        subs.append(Substitution(wt, index, mt))
    if len({s.index for s in subs}) < len(subs):
        raise InvalidVariant(f"{text!r} changes one position twice; give each position once")
    return tuple(subs)


@dataclass
class VariantTable:
    """The rows of a variants CSV, verbatim, with their parsed mutants."""

    path: Path
    header: list[str]
    rows: list[list[str]]
    mutants: list[tuple[Substitution, ...] | None]
    """None for a row skipped as invalid (``--skip-invalid``)."""
    problems: list[str] = field(default_factory=list)
    """One message per invalid row."""


def read_variants(path: Path, sequence: str, *, mutation_col: str = "mutant", offset: int = 1,
                  skip_invalid: bool = False) -> VariantTable:
    """Read and check every row of ``path``; the first invalid row raises unless ``skip_invalid``."""
    with open(path, newline="", encoding="utf-8-sig") as fh:  # DMS files often start with a BOM
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file; give a CSV with a header and a {mutation_col!r} column")
        rows = [row for row in reader if row]
    if mutation_col not in header:
        raise ValueError(f"{path}: no column {mutation_col!r} (columns: {', '.join(header[:12])}"
                         f"{', ...' if len(header) > 12 else ''}); name the mutant column with --mutation-col")
    col = header.index(mutation_col)
    table = VariantTable(path=path, header=header, rows=rows, mutants=[])
    for number, row in enumerate(rows, start=1):
        text = row[col] if col < len(row) else ""
        try:
            table.mutants.append(parse_mutant(text, sequence, offset))
        except InvalidVariant as err:
            message = f"{path}: row {number} (line {number + 1}, mutant {text!r}): {err}"
            if not skip_invalid:
                raise InvalidVariant(f"{message}; or pass --skip-invalid to skip such rows") from None
            table.mutants.append(None)
            table.problems.append(message)
    if skip_invalid and table.problems:
        log.warning("%s: skipped %d invalid rows of %d (their scores are left empty); first: %s", path,
                    len(table.problems), len(rows), table.problems[0])
    if all(m is None for m in table.mutants):
        raise ValueError(f"{path}: no valid mutants to score")
    return table


# --------------------------------------------------------------------------- windows


def assign_windows(n_tokens: int, size: int, causal: bool) -> tuple[list[int], np.ndarray]:
    """Overlapping windows over ``n_tokens`` framed tokens: ``(starts, owner)`` where window w is
    ``[starts[w], starts[w] + size)`` and ``owner[i]`` is the window that token i is read from."""
    if size < 3:
        raise ValueError(f"--max-length must be >= 3 tokens, got {size}")
    if n_tokens <= size:
        return [0], np.zeros(n_tokens, dtype=np.int64)
    stride = size // 2
    starts = list(range(0, n_tokens - size, stride)) + [n_tokens - size]
    s = np.asarray(starts)[:, None]  # (W, 1)
    i = np.arange(n_tokens)[None, :]  # (1, n)
    inside = (i >= s) & (i < s + size)  # (W, n)
    if causal:  # the longest prefix: the first window that holds the token (after its first position)
        owner = (inside & ((i > s) | (i == 0))).argmax(axis=0)
    else:  # nearest the centre
        owner = np.where(inside, np.abs(i - (s + size / 2 - 0.5)), np.inf).argmin(axis=0)
    return starts, owner


@torch.no_grad()
def _log_probs(model: PerformerLM, batch: list[np.ndarray]) -> torch.Tensor:
    """(B, L) equal-length token windows -> (B, L, V) float64 log-probabilities (on the CPU)."""
    device = next(model.parameters()).device
    ids = torch.tensor(np.stack(batch), dtype=torch.long, device=device)
    return model(ids).logits.double().log_softmax(-1).cpu()


def masked_log_probs(model: PerformerLM, tokens: np.ndarray, targets: Sequence[int], *, max_length: int,
                     batch_size: int = 8) -> dict[int, torch.Tensor]:
    """For each token index in ``targets``: (V,) log-probs with that token masked (in its window)."""
    starts, owner = assign_windows(len(tokens), max_length, causal=False)
    inputs, where = [], []
    for i in targets:
        a = starts[owner[i]]
        window = tokens[a : a + max_length].copy()
        window[i - a] = ALPHABET.mask_idx
        inputs.append(window)
        where.append(i - a)
    out = {}
    for lo in range(0, len(inputs), batch_size):
        lp = _log_probs(model, inputs[lo : lo + batch_size])  # (b, L, V)
        for j, i in enumerate(targets[lo : lo + batch_size]):
            out[i] = lp[j, where[lo + j]]
    return out


def unmasked_log_probs(model: PerformerLM, tokens: np.ndarray, *, max_length: int) -> torch.Tensor:
    """(n, V) log-probs of every token index of a masked model, one unmasked pass per window."""
    starts, owner = assign_windows(len(tokens), max_length, causal=False)
    out = torch.zeros(len(tokens), len(ALPHABET), dtype=torch.float64)
    for w, a in enumerate(starts):
        lp = _log_probs(model, [tokens[a : a + max_length]])[0]  # (L, V)
        mine = np.flatnonzero(owner == w)
        out[mine] = lp[mine - a]
    return out


def causal_log_likelihoods(model: PerformerLM, sequences: Sequence[np.ndarray], *, max_length: int,
                           batch_size: int = 8) -> np.ndarray:
    """log p(sequence) of framed sequences (all tokens after ``<cls>``), windows as above."""
    out = np.zeros(len(sequences))
    by_length: dict[int, list[int]] = {}
    for k, s in enumerate(sequences):
        by_length.setdefault(len(s), []).append(k)
    for n, members in by_length.items():
        starts, owner = assign_windows(n, max_length, causal=True)
        for w, a in enumerate(starts):
            mine = np.flatnonzero(owner == w)
            mine = mine[mine > 0]
            if not len(mine):
                continue
            for lo in range(0, len(members), batch_size):
                chunk = members[lo : lo + batch_size]
                lp = _log_probs(model, [sequences[k][a : a + max_length] for k in chunk])  # (b, L, V)
                for j, k in enumerate(chunk):
                    target = torch.as_tensor(sequences[k][mine].astype(np.int64))
                    out[k] += float(lp[j, mine - 1 - a].gather(-1, target[:, None]).sum())
    return out


def pseudo_log_likelihoods(model: PerformerLM, sequences: Sequence[np.ndarray], *, max_length: int,
                           batch_size: int = 8) -> np.ndarray:
    """Sum over residues of log p(residue | the rest, residue masked) of framed sequences."""
    out = np.zeros(len(sequences))
    for k, tokens in enumerate(sequences):
        targets = list(range(1, len(tokens) - 1))
        lp = masked_log_probs(model, tokens, targets, max_length=max_length, batch_size=batch_size)
        out[k] = sum(float(lp[i][tokens[i]]) for i in targets)
    return out


def _apply(sequence: str, subs: tuple[Substitution, ...]) -> str:
    chars = list(sequence)
    for s in subs:
        chars[s.index] = s.mt
    return "".join(chars)


def _id(letter: str) -> int:
    return int(ALPHABET.encode(letter)[0])


def score_mutants(model: PerformerLM, sequence: str, mutants: Sequence[tuple[Substitution, ...] | None], *,
                  causal: bool, strategy: Strategy = "masked-marginals", max_length: int = 1024,
                  batch_size: int = 8) -> np.ndarray:
    """One score per mutant (NaN where the mutant is None), as in the module docstring."""
    if strategy not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    model.eval()
    wt = ALPHABET.frame(sequence)  # (n + 2,): <cls> residues <eos>; residue j is token j + 1
    scores = np.full(len(mutants), np.nan)
    valid = [k for k, m in enumerate(mutants) if m is not None]
    if causal or strategy == "pseudo-ppl":
        seqs = [wt] + [ALPHABET.frame(_apply(sequence, mutants[k])) for k in valid]
        fn = causal_log_likelihoods if causal else pseudo_log_likelihoods
        ll = fn(model, seqs, max_length=max_length, batch_size=batch_size)
        scores[valid] = ll[1:] - ll[0]
        return scores
    if strategy == "masked-marginals":
        targets = sorted({s.index + 1 for k in valid for s in mutants[k]})
        lp = masked_log_probs(model, wt, targets, max_length=max_length, batch_size=batch_size)
    else:
        table = unmasked_log_probs(model, wt, max_length=max_length)
        lp = {i: table[i] for i in range(len(wt))}
    for k in valid:
        scores[k] = sum(float(lp[s.index + 1][_id(s.mt)] - lp[s.index + 1][_id(s.wt)]) for s in mutants[k])
    return scores


# --------------------------------------------------------------------------- baselines and statistics


def blosum62_scores(mutants: Sequence[tuple[Substitution, ...] | None]) -> np.ndarray:
    """BLOSUM62[wt, mut] summed over each mutant's substitutions (NaN for None)."""
    from protein_performer.analysis.similarity import blosum62

    matrix, order = blosum62(), {a: i for i, a in enumerate(STANDARD_AMINO_ACIDS)}
    return np.array([np.nan if m is None else float(sum(matrix[order[s.wt], order[s.mt]] for s in m))
                     for m in mutants])


def unigram_scores(mutants: Sequence[tuple[Substitution, ...] | None], probs: np.ndarray) -> np.ndarray:
    """``log u(mut) - log u(wt)`` summed over each mutant's substitutions; ``probs`` by token id."""
    logu = np.log(np.maximum(probs, 1e-300))
    return np.array([np.nan if m is None else float(sum(logu[_id(s.mt)] - logu[_id(s.wt)] for s in m))
                     for m in mutants])


@dataclass
class Correlation:
    """Spearman's rho of one score column with the measurements."""

    name: str
    spearman: float
    ci95: tuple[float, float] | None
    n: int
    """Rows with both a score and a measurement."""


def _rank(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, axis=-1)


def spearman(scores: np.ndarray, measured: np.ndarray, *, name: str = "", bootstrap: int = 2000,
             seed: int = 0) -> Correlation:
    """Spearman's rho on the rows where both are finite, with a 95% percentile bootstrap interval
    over rows (None with fewer than 3 rows or ``bootstrap`` 0)."""
    keep = np.isfinite(scores) & np.isfinite(measured)
    x, y = scores[keep], measured[keep]
    n = len(x)
    if n < 3:
        return Correlation(name, float("nan"), None, n)

    def rho(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # (..., n) -> (...,): Pearson of the ranks
        ra, rb = _rank(a), _rank(b)
        ra, rb = ra - ra.mean(-1, keepdims=True), rb - rb.mean(-1, keepdims=True)
        den = np.sqrt((ra * ra).sum(-1) * (rb * rb).sum(-1))
        return np.where(den > 0, (ra * rb).sum(-1) / np.where(den > 0, den, 1), np.nan)

    value = float(rho(x, y))
    if bootstrap <= 0:
        return Correlation(name, value, None, n)
    rng = np.random.default_rng(seed)
    draws = []
    for lo in range(0, bootstrap, 200):  # resample rows in blocks to bound memory
        idx = rng.integers(0, n, size=(min(200, bootstrap - lo), n))
        draws.append(rho(x[idx], y[idx]))
    draws = np.concatenate(draws)
    draws = draws[np.isfinite(draws)]
    return Correlation(name, value, (float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))), n)


def substitution_matrix(model: PerformerLM, sequence: str, *, max_length: int = 1024,
                        batch_size: int = 8) -> np.ndarray:
    """(n, 20) masked marginals ``log p(aa) - log p(wt)`` at every position, all 19 substitutions
    (columns in ``STANDARD_AMINO_ACIDS`` order; 0 at the wild type): the standard DMS heatmap."""
    wt = ALPHABET.frame(sequence)
    lp = masked_log_probs(model, wt, list(range(1, len(wt) - 1)), max_length=max_length, batch_size=batch_size)
    aa = list(ALPHABET.standard_indices)
    return np.stack([(lp[i][aa] - lp[i][wt[i]]).numpy() for i in range(1, len(wt) - 1)])


def plot_substitution_matrix(matrix: np.ndarray, sequence: str, offset: int, path: Path, title: str = "") -> None:
    """Draw :func:`substitution_matrix` (positions along x, the 20 amino acids along y)."""
    import matplotlib

    matrix_t = matrix.T  # (20, n)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = min(max(6.0, 0.12 * len(sequence)), 60.0)
    fig, ax = plt.subplots(figsize=(width, 4.2))
    lim = float(np.abs(matrix_t).max()) or 1.0
    im = ax.imshow(matrix_t, aspect="auto", cmap="RdBu", vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_yticks(range(20), list(STANDARD_AMINO_ACIDS), fontsize=7)
    step = max(1, len(sequence) // 40)
    ticks = list(range(0, len(sequence), step))
    ax.set_xticks(ticks, [f"{sequence[i]}{i + offset}" for i in ticks], rotation=90, fontsize=6)
    ax.set_xlabel("wild-type residue and position")
    ax.set_title(title or "masked marginals: log p(substitution) - log p(wild type)")
    fig.colorbar(im, ax=ax, fraction=0.02, pad=0.01)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


# --------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from protein_performer.checkpoint import add_device_argument

    parser.add_argument("--checkpoint", required=True, nargs="+", type=Path,
                        help="one or more ProteinLM checkpoints: one score column each")
    parser.add_argument("--fasta", required=True, type=Path, help="the wild-type sequence (first record)")
    parser.add_argument("--variants", required=True, type=Path, help="CSV with one mutant per row (e.g. a DMS)")
    parser.add_argument("--mutation-col", default="mutant", help="column of mutants like H24C or H24C:A30G")
    parser.add_argument("--offset-idx", type=int, default=1, help="number of the sequence's first residue (default 1)")
    parser.add_argument("--strategy", default="masked-marginals", choices=STRATEGIES,
                        help="masked models: masked-marginals (default), wt-marginals (one pass) or pseudo-ppl "
                             "(slow); causal models always score the log-likelihood ratio")
    parser.add_argument("--score-col", default=None, help="column of measured scores: Spearman with 95%% CIs, "
                                                          "BLOSUM62 and unigram baselines, JSON summary")
    parser.add_argument("--max-length", type=int, default=1024,
                        help="window length in tokens; longer proteins are read in overlapping windows (default 1024)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the intervals (0: none)")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="count invalid rows (left unscored) instead of stopping at the first")
    parser.add_argument("--plot", type=Path, default=None,
                        help="draw the DMS heatmap (all 19 substitutions per position, masked marginals of the "
                             "first masked checkpoint) to this PNG; its matrix goes beside it as CSV")
    add_device_argument(parser)
    parser.add_argument("--out", required=True, type=Path, help="the input CSV plus one score column per checkpoint")
    parser.add_argument("--summary", type=Path, default=None,
                        help="JSON summary (default: --out with .json, written when --score-col is given)")


def _read_wild_type(path: Path) -> str:
    from protein_performer.corpus.fasta import read_records

    records = list(read_records(path))
    if not records:
        raise ValueError(f"{path}: no sequence; give the wild type as a FASTA record")
    if len(records) > 1:
        log.warning("%s: %d records; the first (%s) is the wild type", path, len(records), records[0].id)
    return records[0].sequence


def _column_name(path: Path, taken: set[str]) -> str:
    name, k = path.stem, 2
    while name in taken:
        name, k = f"{path.stem}_{k}", k + 1
    taken.add(name)
    return name


def _measured(table: VariantTable, column: str) -> np.ndarray:
    if column not in table.header:
        raise ValueError(f"{table.path}: no column {column!r} for --score-col; columns: {', '.join(table.header[:12])}")
    col = table.header.index(column)
    values = []
    for row in table.rows:
        try:
            values.append(float(row[col]) if col < len(row) and row[col].strip() else math.nan)
        except ValueError:
            values.append(math.nan)
    return np.asarray(values)


def run(args: argparse.Namespace) -> int:
    from protein_performer.baselines import unigram_probabilities
    from protein_performer.checkpoint import default_device, load_checkpoint
    from protein_performer.outputs import check_output

    summary_path = args.summary or args.out.with_suffix(".json")
    check_output(args.out, "file", inputs=[args.variants, args.fasta, *args.checkpoint])
    if args.score_col:
        check_output(summary_path, "file", inputs=[args.variants, args.out], flag="--summary")
    sequence = _read_wild_type(args.fasta)
    table = read_variants(args.variants, sequence, mutation_col=args.mutation_col, offset=args.offset_idx,
                          skip_invalid=args.skip_invalid)
    measured = _measured(table, args.score_col) if args.score_col else None
    device = args.device or default_device()
    taken, columns, models, unigram = set(table.header), {}, [], None
    for path in args.checkpoint:
        loaded = load_checkpoint(path)
        model = loaded.model.to(device)
        causal = loaded.config.causal
        name = _column_name(path, taken)
        strategy = "log-likelihood-ratio" if causal else args.strategy
        log.info("%s: scoring %d mutants (%s)", path, sum(m is not None for m in table.mutants), strategy)
        columns[name] = score_mutants(model, sequence, table.mutants, causal=causal, strategy=args.strategy,
                                      max_length=args.max_length, batch_size=args.batch_size)
        models.append({"checkpoint": str(path), "column": name, "objective": loaded.objective, "strategy": strategy})
        if unigram is None:
            unigram = unigram_probabilities(loaded.train_token_counts)
        if args.plot and not causal and not any(m.get("plot") for m in models):
            matrix = substitution_matrix(model, sequence, max_length=args.max_length, batch_size=args.batch_size)
            np.savetxt(args.plot.with_suffix(".csv"), matrix, delimiter=",", fmt="%.6f",
                       header=",".join(STANDARD_AMINO_ACIDS), comments="")
            plot_substitution_matrix(matrix, sequence, args.offset_idx, args.plot, title=f"{name}: masked marginals")
            models[-1]["plot"] = str(args.plot)
    if args.plot and not any(m.get("plot") for m in models):
        log.warning("--plot needs a masked checkpoint (the heatmap is of masked marginals); none was given")
    _write_csv(args.out, table, columns)
    log.info("wrote %s (%d rows, %d score columns)", args.out, len(table.rows), len(columns))
    if measured is None:
        return 0
    unigram_source = "training split of the first checkpoint"
    if unigram is None:
        counts = np.bincount(ALPHABET.encode(sequence), minlength=len(ALPHABET))
        unigram, unigram_source = unigram_probabilities(counts), "wild-type composition (no training counts)"
    baselines = {"blosum62": blosum62_scores(table.mutants), "unigram": unigram_scores(table.mutants, unigram)}
    kw = dict(bootstrap=args.bootstrap, seed=0)
    for m in models:
        m.update({k: v for k, v in asdict(spearman(columns[m["column"]], measured, **kw)).items() if k != "name"})
    summary = {
        "variants": str(args.variants), "fasta": str(args.fasta), "score_col": args.score_col,
        "offset_idx": args.offset_idx, "rows": len(table.rows), "invalid_rows": len(table.problems),
        "models": models,
        "baselines": {name: {k: v for k, v in asdict(spearman(s, measured, **kw)).items() if k != "name"}
                      for name, s in baselines.items()},
        "unigram_source": unigram_source,
    }
    text = json.dumps(_finite(summary), indent=2, allow_nan=False)
    summary_path.write_text(text + "\n")
    for m in models:
        log.info("%s: Spearman %s (95%% CI %s) on %d rows", m["column"], m["spearman"], m["ci95"], m["n"])
    for name, b in summary["baselines"].items():
        log.info("%s baseline: Spearman %s (95%% CI %s)", name, b["spearman"], b["ci95"])
    return 0


def _finite(value):
    """``value`` with every non-finite float (an undefined correlation) as None, for strict JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_csv(path: Path, table: VariantTable, columns: dict[str, np.ndarray]) -> None:
    """The input rows verbatim plus the score columns (empty for skipped rows), written atomically."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([*table.header, *columns])
        for k, row in enumerate(table.rows):
            row = row + [""] * (len(table.header) - len(row))
            writer.writerow([*row, *("" if not math.isfinite(c[k]) else f"{c[k]:.6g}" for c in columns.values())])
    tmp.replace(path)
