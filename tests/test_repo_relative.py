"""Generated documents name paths as they would be typed in any clone, never this machine's."""

from __future__ import annotations

import json
from pathlib import Path

from protein_performer.outputs import repo_relative
from protein_performer.experiments.report.markdown import portable

REPO = Path(__file__).resolve().parents[1]


def test_paths_in_and_beside_the_checkout_become_relative_and_others_stay():
    root = Path("/srv/u/proj")
    text = ("python scripts/reproduce.py --fasta /srv/u/shared/data/e.fasta.gz --out /srv/u/proj/docs "
            "--work-dir /tmp/w --cwd=/srv/u/proj --other /srv/u/projects/x /srv/u2/y x/srv/u/proj/z")
    assert repo_relative(text, root) == (
        "python scripts/reproduce.py --fasta ../shared/data/e.fasta.gz --out docs "
        "--work-dir /tmp/w --cwd=. --other ../projects/x /srv/u2/y x/srv/u/proj/z")
    assert repo_relative("/a/b", Path("/")) == "/a/b"  # nothing is relative to the file-system root


def test_the_report_drops_this_checkouts_absolute_paths():
    command = f"python scripts/reproduce.py --fasta {REPO.parent}/shared/data/e.fasta.gz --out {REPO}/docs"
    assert portable(command) == "python scripts/reproduce.py --fasta ../shared/data/e.fasta.gz --out docs"


def test_the_shipped_results_name_no_machines_paths():
    for path in (REPO / "docs" / "RESULTS.md", REPO / "README.md"):
        assert "/work/" not in path.read_text(), path
    command = json.loads((REPO / "docs" / "figures" / "results_all.json").read_text())["environment"]["command"]
    assert "/work/" not in command and "../shared/data/" in command
