"""Run by test_ddp as a script: Lightning re-launches it once per extra rank (DDP, gloo, CPU).

Each rank writes what its recording backend received to ``<out>/rank-<rank>.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from lightning_models import data, lightning, regression_module, trainer

import tracelet

out = Path(sys.argv[1])
run = tracelet.start(backends=["recording"])
pl = lightning("lightning.pytorch")
csv_logger = pl.loggers.CSVLogger(str(out / "csv"), name="truth", version=0)
fitted = trainer("lightning.pytorch", out, logger=csv_logger, strategy="ddp", devices=2, max_epochs=1)
fitted.fit(regression_module("lightning.pytorch"), data(), data(seed=1))
run.stop()
recording = run.get_plugin("recording")
rank = int(os.environ.get("LOCAL_RANK", "0"))
metrics = [[m.name, m.step, m.value] for m in recording.metrics]  # type: ignore[attr-defined]
(out / f"rank-{rank}.json").write_text(json.dumps({"metrics": metrics, "params": recording.params}))  # type: ignore[attr-defined]
