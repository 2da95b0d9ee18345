"""The commands the README and the guides in docs/ show are real: every `protein-performer` command
exists and takes each flag written after it (under its current name, not a deprecated one), every
config named exists, and every `make` target and script is in the checkout."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import re
import shlex
from pathlib import Path

from protein_performer.cli import COMMANDS, LIGHTNING_COMMANDS

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = ["README.md", "docs/cli.md", "docs/variant_effects.md"]


def code_lines(path: Path) -> list[str]:
    """The lines of the fenced code blocks of a markdown file, continuation lines joined and
    comments dropped."""
    lines, inside, pending = [], False, ""
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            inside = not inside
            continue
        if not inside:
            continue
        line = pending + re.sub(r"\s+#.*$", "", line.strip())
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def documented(program: str, documents: list[str] = DOCUMENTS, root: Path = REPO) -> list[tuple[str, list[str]]]:
    """(document, words after ``program``) for each line of a code block that runs it; optional
    parts (``[--flag X]``) and alternatives (``h5|npz``) become plain words."""
    found = []
    for name in documents:
        for line in code_lines(root / name):
            words = shlex.split(line.replace("[", " ").replace("]", " ").replace("|", " | "))
            if program in words:
                found.append((name, words[words.index(program) + 1:]))
    return found


def _flags(words: list[str]) -> list[str]:
    return [w.split("=")[0] for w in words if re.fullmatch(r"--[a-z][\w.-]*(=.*)?", w)]


def _current_options(command: str) -> set[str]:
    """The option strings ``command`` takes under their current names (deprecated aliases, hidden
    from --help, are left out)."""
    parser = argparse.ArgumentParser()
    importlib.import_module(COMMANDS[command][0]).add_arguments(parser)
    return {s for a in parser._actions if a.help is not argparse.SUPPRESS for s in a.option_strings}


def _lightning_keys() -> dict[str, set[str]]:
    from pytorch_lightning import Trainer

    from protein_performer.datamodule import ProteinDataModule
    from protein_performer.lit import ProteinLM
    from protein_performer.model import PerformerConfig

    return {"model": set(inspect.signature(ProteinLM.__init__).parameters),
            "model.config": {f.name for f in dataclasses.fields(PerformerConfig)},
            "data": set(inspect.signature(ProteinDataModule.__init__).parameters),
            "trainer": set(inspect.signature(Trainer.__init__).parameters)}


def test_the_documents_show_every_command():
    shown = {words[0] for _, words in documented("protein-performer") if words}
    assert set(COMMANDS) <= shown, f"commands no document shows: {sorted(set(COMMANDS) - shown)}"


def test_every_documented_command_and_flag_exists():
    options = {name: _current_options(name) for name in COMMANDS}
    lightning = _lightning_keys()
    problems = []
    for document, words in documented("protein-performer"):
        commands = [w for w in words[:3] if w in (*COMMANDS, *LIGHTNING_COMMANDS)]
        if not commands or words[0] not in commands:
            problems.append(f"{document}: unknown command in `protein-performer {' '.join(words)}`")
            continue
        for flag in _flags(words):
            if commands[0] in COMMANDS:
                ok = flag in options[commands[0]]
            else:
                section, _, key = flag[2:].rpartition(".")
                ok = (flag in ("--config", "--ckpt_path", "--print_config")
                      or key in lightning.get(section, ()))
            if not ok:
                problems.append(f"{document}: `{commands[0]}` takes no {flag}")
    assert not problems, "\n".join(problems)


def test_every_documented_config_make_target_and_script_exists():
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.M))
    missing = []
    for document, words in documented("protein-performer"):
        for flag, value in zip(words, words[1:]):
            if flag == "--config" and value.startswith("configs/") and "X" not in value:
                missing += [f"{document}: {value}"] * (not (REPO / value).is_file())
    for document, words in documented("make"):
        missing += [f"{document}: make {words[0]}"] * (words[0] not in targets)
    for document, words in documented("python"):
        if words and words[0].startswith("scripts/"):
            missing += [f"{document}: {words[0]}"] * (not (REPO / words[0]).is_file())
    assert not missing, f"documented but absent: {missing}"


def test_code_blocks_become_commands_with_their_optional_flags(tmp_path):
    (tmp_path / "doc.md").write_text(
        "`protein-performer score` in prose is not a command\n```bash\n# a comment\n"
        "protein-performer embed --out e.h5 [--layers -1 -2] [--format h5|npz]   # resumes\n"
        "protein-performer fit --config configs/demo.yaml \\\n    --trainer.max_steps 10\n```\n")
    assert documented("protein-performer", ["doc.md"], tmp_path) == [
        ("doc.md", ["embed", "--out", "e.h5", "--layers", "-1", "-2", "--format", "h5", "|", "npz"]),
        ("doc.md", ["fit", "--config", "configs/demo.yaml", "--trainer.max_steps", "10"])]
    flags = _flags(["--out", "x", "--config=a.yaml", "-1", "--data.data_dir"])
    assert flags == ["--out", "--config", "--data.data_dir"]
