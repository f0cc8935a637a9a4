"""Access log lines for tests: AWS's documented examples (joined onto one line each) and a few
made the same way for cases the examples do not show."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

TG = "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067"
CERT = "arn:aws:acm:us-east-2:123456789012:certificate/12345678-1234-1234-1234-123456789012"

# From AWS's "Access log entries" page (Examples), in its field order.
AWS_HTTP = (
    "http 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 "
    "192.168.131.39:2817 10.0.0.1:80 0.000 0.001 0.000 200 200 34 366 "
    f'"GET http://www.example.com:80/ HTTP/1.1" "curl/7.46.0" - - {TG} '
    '"Root=1-58337262-36d228ad5d99923122bbe354" "-" "-" '
    '0 2018-07-02T22:22:48.364000Z "forward" "-" "-" 10.0.0.1:80 200 "-" "-"'
)
AWS_HTTPS = (
    "https 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 "
    "192.168.131.39:2817 10.0.0.1:80 0.086 0.048 0.037 200 200 0 57 "
    '"GET https://www.example.com:443/ HTTP/1.1" "curl/7.46.0" ECDHE-RSA-AES128-GCM-SHA256 '
    f'TLSv1.2 {TG} "Root=1-58337281-1d84f3d73c47ec4e58577259" "www.example.com" "{CERT}" '
    '1 2018-07-02T22:22:48.364000Z "authenticate,forward" "-" "-" 10.0.0.1:80 200 "-" "-"'
)
AWS_H2 = (
    "h2 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 "
    "10.0.1.252:48160 10.0.0.66:9000 0.000 0.002 0.000 200 200 5 257 "
    '"GET https://10.0.2.105:773/ HTTP/2.0" "curl/7.46.0" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 '
    f'{TG} "Root=1-58337327-72bd00b0343d75b906739c42" "-" "-" '
    '1 2018-07-02T22:22:48.364000Z "redirect" "https://example.com:80/" "-" 10.0.0.66:9000 200 '
    '"-" "-"'
)
AWS_WS = (
    "ws 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 "
    "10.0.0.140:40914 10.0.1.192:8010 0.001 0.003 0.000 101 101 218 587 "
    f'"GET http://10.0.0.30:80/ HTTP/1.1" "-" - - {TG} '
    '"Root=1-58337364-23a8c76965a2ef7629b185e3" "-" "-" '
    '1 2018-07-02T22:22:48.364000Z "forward" "-" "-" 10.0.1.192:8010 101 "-" "-"'
)
AWS_WSS = (
    "wss 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 "
    "10.0.0.140:44244 10.0.0.171:8010 0.000 0.001 0.000 101 101 218 786 "
    '"GET https://10.0.0.30:443/ HTTP/1.1" "-" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 '
    f'{TG} "Root=1-58337364-23a8c76965a2ef7629b185e3" "-" "-" '
    '1 2018-07-02T22:22:48.364000Z "forward" "-" "-" 10.0.0.171:8010 101 "-" "-"'
)
AWS_LAMBDA_OK = (
    "http 2018-11-30T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 "
    "192.168.131.39:2817 - 0.000 0.001 0.000 200 200 34 366 "
    f'"GET http://www.example.com:80/ HTTP/1.1" "curl/7.46.0" - - {TG} '
    '"Root=1-58337364-23a8c76965a2ef7629b185e3" "-" "-" '
    '0 2018-11-30T22:22:48.364000Z "forward" "-" "-" "-" "-" "-" "-"'
)
AWS_LAMBDA_FAILED = (
    "http 2018-11-30T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 "
    "192.168.131.39:2817 - 0.000 0.001 0.000 502 - 34 366 "
    f'"GET http://www.example.com:80/ HTTP/1.1" "curl/7.46.0" - - {TG} '
    '"Root=1-58337364-23a8c76965a2ef7629b185e3" "-" "-" '
    '0 2018-11-30T22:22:48.364000Z "forward" "-" "LambdaInvalidResponse" "-" "-" "-" "-"'
)
AWS_EXAMPLES = {
    "http": AWS_HTTP,
    "https": AWS_HTTPS,
    "h2": AWS_H2,
    "ws": AWS_WS,
    "wss": AWS_WSS,
    "lambda-ok": AWS_LAMBDA_OK,
    "lambda-failed": AWS_LAMBDA_FAILED,
}

# The current layout: quoted target:port_list and status list, then conn_trace_id and the
# transform fields.
MODERN = (
    "https 2024-05-01T12:00:01.500000Z app/shop-prod/50dc6c495c0c9188 "
    "2600:1f18:147f:e850:e203:c906:ef5b:9fa5:51234 10.0.1.12:8080 0.001 0.045 0.000 200 200 "
    '320 2040 "GET https://shop.example.com:443/api/cart?x=1 HTTP/1.1" '
    '"Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 '
    f'{TG} "Root=1-66322c01-0123456789abcdef01234567" "shop.example.com" "{CERT}" 3 '
    '2024-05-01T12:00:01.454000Z "forward" "-" "-" "10.0.1.12:8080" "200" "-" "-" '
    'TID_0123456789abcdef0123456789abcdef "-" "-" "-"'
)
# The load balancer could not reach a target: -1 times, 503, no target status.
ELB_503 = (
    "http 2024-05-01T12:00:02.000000Z app/shop-prod/50dc6c495c0c9188 198.51.100.8:1000 - "
    '-1 -1 -1 503 - 100 200 "GET http://shop.example.com:80/api/cart HTTP/1.1" "curl/8" - - '
    f'{TG} "Root=1-x" "-" "-" 0 2024-05-01T12:00:02.000000Z "forward" "-" "-" "-" "-" "-" "-" '
    'TID_b "-" "-" "-"'
)
# A malformed request, as the load balancer logs it.
MALFORMED_REQUEST = (
    "http 2025-03-01T10:03:17.218099Z app/MyALB1/240dbdc5244653c9 205.210.31.158:61084 - "
    '-1 -1 -1 400 - 0 272 "- http://myalb1-878688131.us-east-1.elb.amazonaws.com:80- -" "-" '
    '- - - "-" "-" "-" - 2025-03-01T10:03:16.682000Z "-" "-" "-" "-" "-" "-" "-" '
    "TID_6cfb27fd2ef25c42932bd6e0ff56d631"
)


def load_generator():
    """bench/gen_alb.py as a module (the benchmarks' synthetic log generator)."""
    path = Path(__file__).resolve().parent.parent / "bench" / "gen_alb.py"
    if "gen_alb" not in sys.modules:
        spec = importlib.util.spec_from_file_location("gen_alb", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["gen_alb"] = module
        spec.loader.exec_module(module)
    return sys.modules["gen_alb"]


def line(
    when: str = "2024-05-01T12:00:00.000000Z",
    *,
    status: int = 200,
    target_status: str = "200",
    times: tuple[str, str, str] = ("0.001", "0.020", "0.000"),
    request: str = "GET https://shop.example.com:443/api/cart HTTP/1.1",
    actions: str = "forward",
) -> str:
    """A modern access log line with the given fields."""
    target = "-" if target_status == "-" else "10.0.1.12:8080"
    return (
        f"https {when} app/shop-prod/50dc6c495c0c9188 203.0.113.9:40000 {target} "
        f"{times[0]} {times[1]} {times[2]} {status} {target_status} 300 2000 "
        f'"{request}" "curl/8.5.0" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 {TG} '
        f'"Root=1-66322c01-0123456789abcdef01234567" "shop.example.com" "{CERT}" 1 {when} '
        f'"{actions}" "-" "-" "{target}" "{target_status}" "-" "-" TID_0a "-" "-" "-"'
    )
