"""Checkpoints loaded from several threads at once (the window loads A and B in two
workers) each run as they would loaded alone."""
import json
import subprocess
import sys

from segview.resources import DEMO_MODELS
from segview.session.models import load_predictor

AT_ONCE = """
import json
from concurrent.futures import ThreadPoolExecutor
from segview.resources import DEMO_MODELS
from segview.session.models import load_predictor
with ThreadPoolExecutor(2) as pool:
    print(json.dumps([p.runtime for p in pool.map(load_predictor, DEMO_MODELS)]))
"""


def test_two_checkpoints_loaded_at_once_run_as_either_would_alone():
    # A fresh process: a process that loaded a checkpoint before reuses its export.
    result = subprocess.run([sys.executable, "-c", AT_ONCE], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    at_once = json.loads(result.stdout.strip().splitlines()[-1])
    alone = [load_predictor(path).runtime for path in DEMO_MODELS]
    assert at_once == alone
