"""Deterministic synthetic Application Load Balancer access logs, for tests and benchmarks.

Writes files in the AWS key layout (`AWSLogs/<account>/elasticloadbalancing/<region>/yyyy/mm/dd/
<account>_elasticloadbalancing_<region>_app.<name>.<id>_<end>_<node-ip>_<random>.log[.gz]`), one
file per load balancer node per five minutes, every line in the documented field order with the
newer trailing fields. Traffic follows a daily cycle; incidents raise the 5xx rate and/or the
latency of a slice of traffic for a chosen time. The same arguments always give the same bytes.

    python bench/gen_alb.py --out /tmp/alb --lines 1000000 --days 3 \
        --incident at=2024-05-02T14:00Z,for=45m,errors=0.2,path=/api/
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

ACCOUNT = "123456789012"
REGION = "us-east-1"
LB = "app/shop-prod/50dc6c495c0c9188"
TARGET_GROUP = (
    f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:targetgroup/shop-web/73e2d6bc24d8a067"
)
CERT = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/12345678-1234-1234-1234-123456789012"
HOSTS = (("shop.example.com", 0.85), ("static.example.com", 0.15))
# (method, path, weight, median latency in seconds)
ROUTES = (
    ("GET", "/api/products", 30, 0.030),
    ("GET", "/api/products/{id}", 25, 0.020),
    ("GET", "/api/cart", 12, 0.025),
    ("POST", "/api/cart/items", 6, 0.060),
    ("POST", "/api/checkout", 2, 0.250),
    ("GET", "/api/orders/{id}", 3, 0.040),
    ("GET", "/", 10, 0.015),
    ("GET", "/static/app.{id}.js", 8, 0.004),
    ("HEAD", "/health", 2, 0.002),
    ("OPTIONS", "/api/cart", 2, 0.001),
)
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "okhttp/4.12.0",
    "curl/8.5.0",
    "-",
)
CIPHERS = (("ECDHE-RSA-AES128-GCM-SHA256", "TLSv1.2"), ("TLS_AES_128_GCM_SHA256", "TLSv1.3"))


@dataclass(frozen=True)
class Incident:
    """From `start` for `duration`: a fraction `errors` of matching requests fail with a 5xx
    (a third of them answered by the load balancer itself, with -1 processing times), and
    matching requests take `latency` seconds longer."""

    start: datetime
    duration: timedelta
    errors: float = 0.0
    latency: float = 0.0
    path: str = ""

    @classmethod
    def parse(cls, text: str) -> Incident:
        """Parse `at=ISO,for=45m,errors=0.2,latency=1.5,path=/api/`."""
        fields = dict(part.split("=", 1) for part in text.split(",") if part)
        unknown = set(fields) - {"at", "for", "errors", "latency", "path"}
        if unknown or "at" not in fields or "for" not in fields:
            raise ValueError(
                f"bad incident {text!r}: use "
                "at=ISO8601,for=DURATION[,errors=F][,latency=S][,path=P]"
            )
        return cls(
            start=parse_time(fields["at"]),
            duration=parse_duration(fields["for"]),
            errors=float(fields.get("errors", 0)),
            latency=float(fields.get("latency", 0)),
            path=fields.get("path", ""),
        )


def parse_time(text: str) -> datetime:
    """ISO 8601, `Z` allowed; naive means UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_duration(text: str) -> timedelta:
    """`90s`, `45m`, `6h`, `3d`."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return timedelta(seconds=float(text[:-1]) * units[text[-1]])


def minute_counts(lines: int, start: datetime, days: float) -> list[int]:
    """Requests per minute summing to exactly `lines`, following a daily cycle (trough at
    04:00 UTC, peak at 16:00 UTC, peak about four times the trough)."""
    minutes = max(1, int(days * 1440))
    weights = []
    for m in range(minutes):
        hour = (start.hour + start.minute / 60 + m / 60) % 24
        weights.append(1.0 + 0.6 * math.sin(2 * math.pi * (hour - 10) / 24))
    scale = lines / sum(weights)
    counts = [int(w * scale) for w in weights]
    for m in range(lines - sum(counts)):  # hand out the rounding remainder, evenly spread
        counts[(m * 7919) % minutes] += 1
    return counts


class LogWriter:
    """Makes lines for one load balancer; all randomness comes from one seeded generator."""

    def __init__(self, seed: int, incidents: list[Incident]) -> None:
        self.rnd = random.Random(seed)
        self.incidents = incidents
        total = sum(w for _, _, w, _ in ROUTES)
        self.route_cdf = []
        acc = 0.0
        for route in ROUTES:
            acc += route[2] / total
            self.route_cdf.append((acc, route))

    def _route(self) -> tuple[str, str, str, float]:
        x = self.rnd.random()
        route = next((r for edge, r in self.route_cdf if x <= edge), self.route_cdf[-1][1])
        method, path, _, median = route
        host = HOSTS[0][0] if path.startswith("/api") or path == "/" else HOSTS[1][0]
        if "{id}" in path:
            path = path.replace("{id}", str(self.rnd.randrange(1, 50000)))
        if path == "/api/products" and self.rnd.random() < 0.3:
            path += f"?page={self.rnd.randrange(1, 40)}&sort=price"
        return method, host, path, median

    def _client(self) -> str:
        rnd = self.rnd
        if rnd.random() < 0.12:
            groups = ":".join(f"{rnd.randrange(65536):x}" for _ in range(4))
            return f"2600:1f18:{groups}:{rnd.randrange(65536):x}:{rnd.randrange(1024, 65536)}"
        return (
            f"{rnd.randrange(1, 224)}.{rnd.randrange(256)}.{rnd.randrange(256)}."
            f"{rnd.randrange(1, 255)}:{rnd.randrange(1024, 65536)}"
        )

    def line(self, when: datetime) -> str:
        """One access log entry for a response sent at `when`."""
        rnd = self.rnd
        method, host, path, median = self._route()
        errors, extra = 0.0004, 0.0
        for incident in self.incidents:
            if incident.start <= when < incident.start + incident.duration and path.startswith(
                incident.path
            ):
                errors = max(errors, incident.errors)
                extra += incident.latency
        target = f"10.0.{rnd.randrange(1, 4)}.{rnd.randrange(10, 40)}:8080"
        scheme, port = ("https", 443) if rnd.random() < 0.97 else ("http", 80)
        kind = "h2" if scheme == "https" and rnd.random() < 0.6 else scheme
        cipher, protocol = rnd.choice(CIPHERS) if scheme == "https" else ("-", "-")
        request_time = rnd.randrange(0, 3) / 1000
        target_time = round(rnd.lognormvariate(math.log(median), 0.6) + extra, 3)
        response_time = 0.0
        actions, redirect, error_reason = "forward", "-", "-"
        x = rnd.random()
        if x < errors:
            if rnd.random() < 1 / 3:  # the load balancer answers: the target never did
                status, target_status = rnd.choice((502, 503, 504)), "-"
                request_time = target_time = response_time = -1
                target = "-" if status == 503 else target
            else:
                status = target_status = rnd.choice((500, 500, 500, 502, 503))
        elif x < errors + 0.03:
            status = target_status = rnd.choice((400, 401, 403, 404, 404, 404, 409, 429))
        elif scheme == "http":
            status, target_status, target = 301, "-", "-"
            request_time = target_time = response_time = -1
            actions, redirect = "redirect", f"https://{host}:443{path}"
        else:
            status = target_status = 200 if method != "POST" else rnd.choice((200, 201))
        if target_status == "-":
            target_list = status_list = '"-"'
        else:
            target_list, status_list = f'"{target}"', f'"{target_status}"'
        stamp = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        created = (
            when - timedelta(seconds=max(0.0, request_time + target_time + response_time))
        ).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        trace = f"Root=1-{int(when.timestamp()):08x}-{rnd.getrandbits(96):024x}"
        version = "HTTP/2.0" if kind == "h2" else "HTTP/1.1"
        return (
            f"{kind} {stamp} {LB} {self._client()} {target} {request_time:.3f} "
            f"{target_time:.3f} {response_time:.3f} {status} {target_status} "
            f"{rnd.randrange(200, 900)} {rnd.randrange(300, 40000)} "
            f'"{method} {scheme}://{host}:{port}{path} {version}" "{rnd.choice(USER_AGENTS)}" '
            f'{cipher} {protocol} {TARGET_GROUP} "{trace}" "{host if scheme == "https" else "-"}" '
            f'"{CERT if scheme == "https" else "-"}" {rnd.randrange(1, 5)} {created} "{actions}" '
            f'"{redirect}" "{error_reason}" {target_list} {status_list} "-" "-" '
            f'TID_{rnd.getrandbits(128):032x} "-" "-" "-"'
        ).replace(" -1.000 ", " -1 ")


def generate(
    out: str,
    lines: int,
    start: datetime,
    days: float,
    *,
    nodes: int = 3,
    compress: bool = True,
    incidents: list[Incident] | None = None,
    seed: int = 7,
) -> list[str]:
    """Write `lines` entries spread over `days` from `start`; return the file paths written."""
    writer = LogWriter(seed, incidents or [])
    counts = minute_counts(lines, start, days)
    node_ips = [f"10.0.{i + 1}.{100 + i}" for i in range(nodes)]
    written: list[str] = []
    for block in range(0, len(counts), 5):
        block_start = start + timedelta(minutes=block)
        per_node: list[list[str]] = [[] for _ in range(nodes)]
        for m in range(block, min(block + 5, len(counts))):
            minute = start + timedelta(minutes=m)
            n = counts[m]
            for i in range(n):
                when = minute + timedelta(seconds=(i + writer.rnd.random()) * 60 / n)
                per_node[writer.rnd.randrange(nodes)].append(writer.line(when))
        end = block_start + timedelta(minutes=5)
        folder = os.path.join(
            out, "AWSLogs", ACCOUNT, "elasticloadbalancing", REGION, end.strftime("%Y/%m/%d")
        )
        os.makedirs(folder, exist_ok=True)
        for ip, entries in zip(node_ips, per_node, strict=True):
            if not entries:
                continue
            name = (
                f"{ACCOUNT}_elasticloadbalancing_{REGION}_{LB.replace('/', '.')}_"
                f"{end.strftime('%Y%m%dT%H%MZ')}_{ip}_{writer.rnd.getrandbits(32):08x}.log"
            )
            path = os.path.join(folder, name)
            body = ("\n".join(entries) + "\n").encode()
            if compress:
                path += ".gz"
                with (
                    open(path, "wb") as raw,
                    gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as fh,
                ):
                    fh.write(body)
            else:
                with open(path, "wb") as fh:
                    fh.write(body)
            written.append(path)
    return written


def iter_lines(paths: list[str]) -> Iterator[str]:
    """Every line of the given files, in order (gzip or plain)."""
    for path in paths:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                yield line.rstrip("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory to write the AWSLogs tree into")
    parser.add_argument("--lines", type=int, default=5_000_000)
    parser.add_argument("--start", default="2024-05-01T00:00:00Z")
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument(
        "--nodes", type=int, default=3, help="load balancer nodes (files per 5 min)"
    )
    parser.add_argument("--plain", action="store_true", help="write .log instead of .log.gz")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--incident", action="append", default=[], type=Incident.parse)
    args = parser.parse_args(argv)
    files = generate(
        args.out,
        args.lines,
        parse_time(args.start),
        args.days,
        nodes=args.nodes,
        compress=not args.plain,
        incidents=args.incident,
        seed=args.seed,
    )
    print(f"wrote {args.lines} lines in {len(files)} files under {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
