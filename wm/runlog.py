"""Run logs: TensorBoard scalars and a CSV file, written by rank 0 only."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter


class RunLog:
    """Append scalars to ``log.csv`` and TensorBoard under ``run_dir``; on resume, rows after the
    resumed step are dropped so the CSV never holds a step twice."""

    def __init__(self, run_dir: str | Path, resume_step: int = 0, enabled: bool = True) -> None:
        self.enabled = enabled
        self.csv_path = Path(run_dir) / "log.csv"
        self._columns: list[str] | None = None
        self._writer: SummaryWriter | None = None
        if not enabled:
            return
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        self._truncate_after(resume_step)
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=resume_step or None)

    def _truncate_after(self, step: int) -> None:
        if not self.csv_path.is_file():
            return
        with open(self.csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            return
        self._columns = list(rows[0].keys())
        kept = [r for r in rows if int(r["step"]) <= step]
        with open(self.csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._columns)
            writer.writeheader()
            writer.writerows(kept)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled or self._writer is None:
            return
        for name, value in scalars.items():
            self._writer.add_scalar(name, value, step)
        row = {"step": step, **scalars}
        if self._columns is None:
            self._columns = list(row)
            with open(self.csv_path, "w", newline="") as f:
                csv.DictWriter(f, fieldnames=self._columns).writeheader()
        elif set(row) - set(self._columns):  # a value first logged now (a held-out accuracy): widen the file
            self._columns += [k for k in row if k not in self._columns]
            with open(self.csv_path, newline="") as f:
                rows = list(csv.DictReader(f))
            with open(self.csv_path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self._columns)
                writer.writeheader()
                writer.writerows(rows)
        with open(self.csv_path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self._columns, extrasaction="ignore").writerow(row)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
