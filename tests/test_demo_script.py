"""scripts/demo.py's command line (:mod:`protein_performer.experiments.demo`; the demo itself is timed in
docs, not run in tests)."""

from __future__ import annotations

import pytest

from protein_performer.experiments import demo


@pytest.mark.parametrize("steps", ["0", "-5"])
def test_demo_refuses_a_step_count_that_trains_nothing(steps, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--steps", steps, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert f"--steps must be a positive number of training steps, got {steps}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_demo_names_a_missing_fasta(tmp_path):
    with pytest.raises(SystemExit, match="no such file"):
        demo.main(["--fasta", str(tmp_path / "missing.fasta"), "--out", str(tmp_path / "out")])
