"""Every command and every fit process starts by importing sbbench: keep slow imports out of that path.

scipy.stats takes 1-2 s to import on the 2-core reference machine, more than the rest of sbbench apart
from torch; only ranking (ROC-AUC) and the leaderboard's statistics need it, so it is imported where used
(the AUC with ties is checked in tests/test_metrics_classification.py).
"""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["sbbench.cli", "sbbench.isolation"])
def test_importing_the_cli_or_the_fit_process_does_not_import_scipy_stats(module: str) -> None:
    probe = f"import sys, {module}; print('scipy.stats' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"

