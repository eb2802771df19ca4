"""Build a sweep's comparison table from its MLflow runs, beside the paper's claims.

    python -m experiments.report                       # the latest sweep
    python -m experiments.report --sweep <parent run id>
    python -m experiments.report --experiment cosim --out outputs/report/latest

Writes ``report.md``, ``report.csv``, ``claims.csv`` and one bar chart per metric, and logs
them on the sweep's parent run (artifacts under ``report/``). Tracking URI as for
``experiments.run`` (``MLFLOW_TRACKING_URI`` or the repository's ``mlflow.db``).
"""

from __future__ import annotations

import argparse
import sys

from cosim.errors import CosimError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.report", description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--sweep", help="parent run id of the sweep (default: the latest sweep)")
    group.add_argument("--experiment", help="take the latest sweep of this MLflow experiment")
    parser.add_argument("--out", help="output directory (default outputs/report/<parent run id>)")
    parser.add_argument("--framework", default="dt_framework", help="defence the claims are checked on")
    parser.add_argument("--cps-only", default="cps_only", help="defence the production-loss cut is measured against")
    parser.add_argument("--no-log", action="store_true", help="do not log the report on the parent run")
    args = parser.parse_args(argv)

    from mlflow.exceptions import MlflowException

    from cosim.tracking.report import build_report

    try:
        report = build_report(args.sweep, args.experiment, args.out, args.framework, args.cps_only,
                              log=not args.no_log)
    except (CosimError, MlflowException, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report.markdown)
    print(f"{report.runs} run(s), {report.failed} failed; files in {report.files['markdown'].parent}")
    if not args.no_log:
        print(f"logged on the sweep's parent run {report.parent_id} (artifacts: report/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
