"""Detection layer: alerts, online detectors (observers), detectors for recorded tables, metrics."""

from cosim.detection.alert import Alert, AlertBus

__all__ = ["Alert", "AlertBus"]
