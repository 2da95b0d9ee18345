"""Every notebook in notebooks/ runs top to bottom (nbclient), on a tiny model, so none of them rots;
the quickstart's printed results say what it claims to compute."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
KERNEL = "python3"


def _ensure_kernel() -> None:
    """The ``python3`` kernel must be this interpreter (the venv); install its spec there if missing."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
        if Path(spec.argv[0]).resolve() == Path(sys.executable).resolve() or spec.argv[0] == "python":
            return
    except NoSuchKernel:
        pass
    from ipykernel.kernelspec import install

    install(prefix=sys.prefix, kernel_name=KERNEL)


@pytest.fixture(scope="module")
def executed(ecoli_fasta) -> dict[str, "nbformat.NotebookNode"]:
    """Every notebook, executed once (4 training steps), by file name."""
    _ensure_kernel()
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROTEIN_PERFORMER_ECOLI", str(ecoli_fasta))
        mp.setenv("QUICKSTART_STEPS", "4")
        mp.delenv("PROTEIN_PERFORMER_CHECKPOINT", raising=False)
        mp.setenv("MPLBACKEND", "Agg")
        mp.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        for path in NOTEBOOKS:
            nb = nbformat.read(path, as_version=4)
            client = nbclient.NotebookClient(nb, timeout=120, kernel_name=KERNEL,
                                             resources={"metadata": {"path": str(path.parent)}})
            client.execute()
            out[path.name] = nb
    return out


def _outputs(nb) -> list[dict]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, executed):
    errors = [out for out in _outputs(executed[path.name]) if out.get("output_type") == "error"]
    assert not errors


def test_quickstart_trains_embeds_and_compares_with_blosum(executed):
    """The quickstart trains its dim-64 model, embeds 12 proteins at that width, and reports both
    BLOSUM62 comparisons as correlations with the four landmark pairs ranked among the 190 pairs."""
    stdout = "".join(out.get("text", "") for out in _outputs(executed["quickstart.ipynb"])
                     if out.get("output_type") == "stream" and out.get("name") == "stdout")
    assert "dim=64" in stdout and "(12, 64)" in stdout
    for name in ("attention", "embedding"):
        found = re.search(rf"{name}\s+vs BLOSUM62: Pearson ([+-]\d\.\d{{3}}), Spearman ([+-]\d\.\d{{3}}); "
                          r"ranks of D-E F-Y I-V K-R: \[(\d+), (\d+), (\d+), (\d+)\]", stdout)
        assert found, f"no {name} comparison in:\n{stdout}"
        pearson, spearman, *ranks = (float(g) for g in found.groups())
        assert -1 <= pearson <= 1 and -1 <= spearman <= 1
        assert all(1 <= r <= 190 for r in ranks)
