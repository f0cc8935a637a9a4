"""Benchmark: SLO report over ALB access logs, against DuckDB's bare line scan and a Python parser.

Generates (or reuses, with --data) synthetic logs in the AWS layout with bench/gen_alb.py, as
gzip files and as the same files uncompressed, then runs in one go, each in a fresh process:

- floor:  DuckDB reading every line of the same files as one string (`count(line)`), nothing else;
- split:  DuckDB cutting every line at its double quotes, as the report's fast query does, and
          nothing else: no report built this way can be faster;
- report: `sagaway slo report`'s whole pipeline (parse, aggregate, evaluate two SLOs, JSON);
- python: a straightforward parser: one Athena-style regular expression matching every field,
          and the timestamp parsed, line by line.

Targets: report >= 0.8x the floor's speed, >= 10x the Python parser's, peak RSS < 1 GiB.

    python bench/slo.py                 # 5 million lines
    python bench/slo.py --lines 500000  # quick run
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPEC = """\
service: shop
slos:
  - name: api-availability
    objective: 99.9
    window: 30d
    indicator: {type: availability, bad_status: ["5xx"]}
    filter: {host: shop.example.com, path_prefix: /api/, method: [GET, POST]}
  - name: api-latency
    objective: 99
    window: 30d
    indicator: {type: latency, threshold: 0.3}
"""

# One group per field, quoted fields without their quotes; the two list fields quoted or bare.
_Q, _B, _N = r'"([^"]*)"', r"([^ ]*)", r"(-?[0-9.]+)"
_LIST = r'"?([^"]*?)"?'
_FIELDS = (
    *(_B, _B, _B, r"([^ ]*):([0-9]*)", r"([^ ]*?)(?::([0-9]*))?", _N, _N, _N),
    *(r"([0-9]{3})", r"(-|[0-9]{3})", r"(-|[0-9]+)", r"(-|[0-9]+)"),
    *(r'"([^ ]*) (.*) ([^ ]*)"', _Q, _B, _B, _B, _Q, _Q, _Q, r"(-?[0-9]+|-)", _B),
    *(_Q, _Q, _Q, _LIST, _LIST, _Q, _Q),
)
ATHENA_STYLE = re.compile(
    " ".join(_FIELDS) + r'(?: ([^ ]*))?(?: "([^"]*)")?(?: "([^"]*)")?(?: "([^"]*)")?(.*)$'
)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(kind: str, data: str, spec_path: str) -> dict[str, float]:
    """Run one contender in this process; return its measurements."""
    sys.path.insert(0, str(HERE.parent))
    from sagaway.observe.slo import find_log_files

    files = find_log_files([data])
    start, cpu = time.perf_counter(), _cpu()
    if kind == "floor":
        import duckdb

        listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        lines = (
            duckdb.connect()
            .execute(
                f"SELECT count(line) FROM read_csv([{listing}], columns={{'line': 'VARCHAR'}}, "
                "delim='\\x01', quote='', escape='', header=false, auto_detect=false)"
            )
            .fetchall()[0][0]
        )
    elif kind == "split":
        import duckdb

        from sagaway.observe.slo._alb_scan import _SPLIT_COLUMNS, _split_source

        counts = ", ".join(f"count({c})" for c in _SPLIT_COLUMNS)
        source = _split_source(files, rejects=False)
        lines = (
            duckdb.connect().execute(f"SELECT count(*), {counts} FROM {source}").fetchall()[0][0]
        )
    elif kind == "report":
        from sagaway.observe.slo import load_slo_spec, report_from_alb, report_json

        quarantine = os.path.join(tempfile.gettempdir(), f"bench-slo-{os.getpid()}.jsonl")
        report = report_from_alb(load_slo_spec(spec_path), [data], quarantine_path=quarantine)
        json.dumps(report_json(report))
        lines = report.source.lines
        if report.source.malformed:
            os.unlink(quarantine)
    else:
        lines = 0
        for path in files:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
                for text in fh:
                    match = ATHENA_STYLE.match(text.rstrip("\n"))
                    if match:
                        datetime.strptime(match.group(2), "%Y-%m-%dT%H:%M:%S.%fZ")
                        lines += 1
    return {
        "seconds": time.perf_counter() - start,
        "cpu": _cpu() - cpu,
        "rss_mb": _rss_mb(),
        "lines": lines,
    }


def _run(kind: str, data: str, spec_path: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--data", data, "--spec", spec_path],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def prepare(root: Path, lines: int) -> tuple[str, str]:
    """gzip and plain copies of the same synthetic logs under `root` (reused when present)."""
    gz, plain = root / "gzip", root / "plain"
    marker = root / f"lines-{lines}"
    if marker.exists():
        return str(gz), str(plain)
    shutil.rmtree(root, ignore_errors=True)
    sys.path.insert(0, str(HERE))
    import gen_alb

    t = time.perf_counter()
    files = gen_alb.generate(
        str(gz),
        lines,
        gen_alb.parse_time("2024-05-01T00:00:00Z"),
        2.0,
        nodes=3,
        incidents=[
            gen_alb.Incident.parse("at=2024-05-02T14:00Z,for=45m,errors=0.05,path=/api/"),
            gen_alb.Incident.parse("at=2024-05-01T20:00Z,for=2h,latency=0.3"),
        ],
    )
    for path in files:
        target = plain / Path(path).relative_to(gz).with_suffix("")
        target.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(path, "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    marker.touch()
    print(f"generated {lines:,} lines in {len(files)} files in {time.perf_counter() - t:.0f} s")
    return str(gz), str(plain)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each DuckDB contender")
    parser.add_argument("--data", help="directory for the generated logs (kept for reuse)")
    parser.add_argument(
        "--child", choices=("floor", "split", "report", "python"), help=argparse.SUPPRESS
    )
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.data, args.spec)))
        return 0
    root = Path(args.data or os.path.join(tempfile.gettempdir(), "sagaway-bench-alb"))
    gz, plain = prepare(root, args.lines)
    spec_path = str(root / "slo.yaml")
    Path(spec_path).write_text(SPEC)
    results: dict[tuple[str, str], dict[str, float]] = {}
    for fmt, data in (("gzip", gz), ("plain", plain)):
        for _ in range(args.repeat):  # interleaved: the machine is shared and noisy
            for kind in ("floor", "split", "report"):
                run = _run(kind, data, spec_path)
                best = results.get((kind, fmt))
                if best is None or run["seconds"] < best["seconds"]:
                    results[(kind, fmt)] = run
        results[("python", fmt)] = _run("python", data, spec_path)
    print(
        f"\nSLO report over {args.lines:,} ALB lines (best of {args.repeat}; python once); "
        f"{os.cpu_count()} cores"
    )
    header = f"{'contender':8} {'format':6} {'wall s':>7} {'Mlines/s':>9} {'cpu s':>7}"
    print(header + f" {'cores':>5} {'peak RSS MB':>11} {'vs floor':>9} {'vs python':>10}")
    ok = True
    for fmt in ("gzip", "plain"):
        floor, split, report, python = (
            results[(k, fmt)] for k in ("floor", "split", "report", "python")
        )
        for kind, r in (("floor", floor), ("split", split), ("report", report), ("python", python)):
            assert r["lines"] == args.lines, (kind, fmt, r["lines"])
            print(
                f"{kind:8} {fmt:6} {r['seconds']:7.2f} {args.lines / r['seconds'] / 1e6:9.3f} "
                f"{r['cpu']:7.2f} {r['cpu'] / r['seconds']:5.2f} {r['rss_mb']:11.0f} "
                f"{floor['seconds'] / r['seconds']:8.2f}x "
                f"{python['seconds'] / r['seconds']:9.1f}x"
            )
        vs_floor = floor["seconds"] / report["seconds"]
        vs_python = python["seconds"] / report["seconds"]
        verdict = [
            f"report vs floor {vs_floor:.2f}x (target >= 0.8): "
            + ("met" if vs_floor >= 0.8 else "NOT met"),
            f"vs python {vs_python:.1f}x (target >= 10): "
            + ("met" if vs_python >= 10 else "NOT met"),
            f"peak RSS {report['rss_mb']:.0f} MB (target < 1024): "
            + ("met" if report["rss_mb"] < 1024 else "NOT met"),
        ]
        ok = ok and report["rss_mb"] < 1024
        print(f"  {fmt}: " + "; ".join(verdict))
        bound = floor["seconds"] / split["seconds"]
        print(
            f"  {fmt}: splitting alone reaches {bound:.2f}x the floor;"
            f" CPU per line: floor {floor['cpu'] / args.lines * 1e6:.2f} us, "
            f"split {split['cpu'] / args.lines * 1e6:.2f} us, "
            f"report {report['cpu'] / args.lines * 1e6:.2f} us"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
