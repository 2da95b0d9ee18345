"""``protein_performer.allocator``: freed large tensors stay in the process (glibc), or not when
``PROTEIN_PERFORMER_MALLOC=system``. Each case runs in a fresh interpreter: the settings are
process-wide and cannot be undone."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from protein_performer.allocator import on_glibc

pytestmark = pytest.mark.skipif(not on_glibc(), reason="glibc's mallopt only")

PROBE = """
import json, os, torch
from protein_performer.allocator import keep_freed_memory
applied = keep_freed_memory()
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * page
before = rss()
x = torch.ones(64 * 2**20 // 4)  # 64 MiB, far above glibc's largest mmap threshold (32 MiB)
during = rss()
del x
after = rss()
print(json.dumps({"applied": applied, "again": keep_freed_memory(), "held": during - before,
                  "kept": after - before}))
"""


def _probe(setting: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PROTEIN_PERFORMER_MALLOC"}
    if setting is not None:
        env["PROTEIN_PERFORMER_MALLOC"] = setting
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_freed_tensors_stay_mapped_by_default():
    res = _probe(None)
    assert res["applied"] and res["again"]
    assert res["held"] > 60 * 2**20
    assert res["kept"] > 60 * 2**20  # freed, but still the process's: the next step reuses it


def test_system_setting_keeps_glibc_defaults():
    res = _probe("system")
    assert not res["applied"] and not res["again"]
    assert res["held"] > 60 * 2**20
    assert res["kept"] < 8 * 2**20  # glibc unmapped the block: the next one page-faults again
