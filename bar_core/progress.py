"""The CLI's progress bar: a trainer subscriber that draws the run's records with tqdm."""
from __future__ import annotations

import sys

from .records import Record


class ProgressBar:
    """A tqdm bar over all steps, with phase, V/V0 and accuracy in its postfix."""

    def __init__(self):
        from tqdm import tqdm
        self._tqdm = tqdm
        self.bar = None
        self.acc = None

    def __call__(self, r: Record) -> None:
        kind = r.kind
        if kind == "step":
            if self.bar is not None:
                self.bar.update(1)
                post = {"phase": r.phase, "ep": r.epoch, "V/V0": f"{r.volume_ratio:.3f}"}
                if self.acc is not None:
                    post["acc"] = f"{self.acc:.3f}"
                self.bar.set_postfix(post, refresh=False)
        elif kind == "start":
            self.bar = self._tqdm(total=r.total_steps, initial=r.resumed_at, unit="step",
                                  dynamic_ncols=True, mininterval=0.5, file=sys.stderr)
        elif kind == "epoch":
            self.acc = r.test_acc
        elif kind in ("warning", "error") and self.bar is not None:
            self.bar.write(f"{kind}: {r.message}")
        elif kind == "end" and self.bar is not None:
            self.bar.close()
