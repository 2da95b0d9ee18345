"""Every notebook in notebooks/ runs top to bottom (nbclient), on a tiny model, so none of them rots."""

from __future__ import annotations

import os
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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, ecoli_fasta, monkeypatch):
    _ensure_kernel()
    monkeypatch.setenv("PROTEIN_PERFORMER_ECOLI", str(ecoli_fasta))
    monkeypatch.setenv("QUICKSTART_STEPS", "4")
    monkeypatch.delenv("PROTEIN_PERFORMER_CHECKPOINT", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name=KERNEL,
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    errors = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
              if out.get("output_type") == "error"]
    assert not errors


def test_there_is_a_notebook():
    assert any(p.name == "quickstart.ipynb" for p in NOTEBOOKS)
