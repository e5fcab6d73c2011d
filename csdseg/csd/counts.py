"""How much CSD ran: per epoch, the batches, the batches with views, the samples with views and
the samples skipped (no eligible X_s).

Logged at each epoch's end and summed up when training ends, because a CSD run can hardly run
CSD at all and still look like one: on MSRC, where most images hold one object, the literal
Algorithm 1 built 0 or 1 samples a batch of 16 (issue 31), which only the per-step
``csd_samples`` of the log showed. Kept in the step's resumable state, so a resumed run reports
what the uninterrupted one would.
"""
from __future__ import annotations

import logging

log = logging.getLogger("csdseg.csd")
FIELDS = ("batches", "touched", "samples", "skipped")


class CsdCounts:
    def __init__(self) -> None:
        self.epochs: dict[int, dict[str, int]] = {}  # epoch (0-based) -> FIELDS
        self.current = -1

    def add(self, epoch: int, samples: int, skipped: int) -> None:
        """One batch of ``epoch``: ``samples`` with views in the terms, ``skipped`` without an
        eligible X_s. A new epoch first logs the one before it."""
        if epoch != self.current:
            if self.current in self.epochs:
                log.info("csd: %s", self.epoch_line(self.current))
            self.current = epoch
        row = self.epochs.setdefault(epoch, dict.fromkeys(FIELDS, 0))
        row["batches"] += 1
        row["touched"] += int(samples > 0)
        row["samples"] += samples
        row["skipped"] += skipped

    def skipped_in(self, epoch: int) -> int:
        return self.epochs.get(epoch, {}).get("skipped", 0)

    def epoch_line(self, epoch: int) -> str:
        r = self.epochs[epoch]
        return (f"epoch {epoch + 1}: {r['samples']} samples with CSD views in {r['touched']} of "
                f"{r['batches']} batches ({_pct(r['touched'], r['batches'])}); {r['skipped']} "
                "samples trained without CSD terms (no eligible image to paste)")

    def totals(self) -> dict:
        """samples_per_epoch (list, by epoch) and its mean, batches, touched, touched_share,
        skipped."""
        rows = [self.epochs[e] for e in sorted(self.epochs)]
        out = {f: sum(r[f] for r in rows) for f in ("batches", "touched", "skipped")}
        out["samples_per_epoch"] = [r["samples"] for r in rows]
        out["samples_per_epoch_mean"] = sum(out["samples_per_epoch"]) / len(rows) if rows else 0.0
        out["touched_share"] = out["touched"] / out["batches"] if out["batches"] else 0.0
        return out

    def summary(self) -> str:
        """The end-of-training line: samples with views per epoch and the share of batches."""
        t = self.totals()
        return (f"csd: samples with views per epoch {t['samples_per_epoch']}; CSD touched "
                f"{t['touched']} of {t['batches']} batches ({_pct(t['touched'], t['batches'])}); "
                f"{t['skipped']} samples without an eligible image to paste")

    def state_dict(self) -> dict:
        return {"epochs": {e: dict(r) for e, r in self.epochs.items()}, "current": self.current}

    def load_state_dict(self, state: dict) -> None:
        self.epochs = {int(e): dict(r) for e, r in state.get("epochs", {}).items()}
        self.current = state.get("current", -1)


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"
