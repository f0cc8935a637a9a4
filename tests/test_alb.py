"""The ALB access log reader: AWS's examples, odd but valid lines, and lines that must be set
aside with their file, line number and reason."""

from __future__ import annotations

import gzip
import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sagaway.observe.slo import Counter, request_filter, scan_alb
from sagaway.observe.slo._alb import (
    FIELDS,
    MalformedLine,
    Quarantine,
    diagnose,
    find_log_files,
    parse_line,
    split_request,
)
from tests.alb_lines import (
    AWS_EXAMPLES,
    AWS_HTTP,
    AWS_HTTPS,
    AWS_LAMBDA_FAILED,
    ELB_503,
    MALFORMED_REQUEST,
    MODERN,
    line,
    load_generator,
)


@pytest.mark.parametrize("name", sorted(AWS_EXAMPLES))
def test_every_aws_documentation_example_parses(name):
    entry = parse_line(AWS_EXAMPLES[name])
    assert entry["type"] == name.split("-")[0].replace("lambda", "http")
    assert entry["elb"] == "app/my-loadbalancer/50dc6c495c0c9188"
    assert entry.request_processing_time >= 0
    assert entry["request_creation_time"].endswith("Z")
    assert len(entry.fields) == 29  # through classification_reason: they predate conn_trace_id


def test_fields_are_split_in_the_documented_order():
    entry = parse_line(AWS_HTTPS)
    assert entry["client_port"] == "192.168.131.39:2817"
    assert entry["target_port"] == "10.0.0.1:80"
    assert (
        entry.request_processing_time,
        entry.target_processing_time,
        entry.response_processing_time,
    ) == (0.086, 0.048, 0.037)
    assert (entry.elb_status, entry.target_status) == (200, 200)
    assert entry["request"] == "GET https://www.example.com:443/ HTTP/1.1"
    assert entry["ssl_cipher"] == "ECDHE-RSA-AES128-GCM-SHA256"
    assert entry["domain_name"] == "www.example.com"
    assert entry["matched_rule_priority"] == "1"
    assert entry["actions_executed"] == "authenticate,forward"
    # 2018-07-02T22:23:00.186641Z
    assert entry.timestamp == pytest.approx(1530570180.186641)


def test_target_lists_are_accepted_quoted_or_bare():
    bare = parse_line(AWS_HTTP)  # the docs' examples show them bare...
    quoted = parse_line(MODERN)  # ...and the field table quoted
    assert bare["target_port_list"] == "10.0.0.1:80"
    assert bare["target_status_code_list"] == "200"
    assert quoted["target_port_list"] == "10.0.1.12:8080"
    assert quoted["target_status_code_list"] == "200"


def test_newer_trailing_fields_and_unknown_extra_fields():
    entry = parse_line(MODERN + ' "a-future-field" 42')
    assert entry["conn_trace_id"] == "TID_0123456789abcdef0123456789abcdef"
    assert entry["request_transform_status"] == "-"
    assert entry.extra == ("a-future-field", "42")
    assert len(FIELDS) == 33


def test_ipv6_client_and_request_parts():
    entry = parse_line(MODERN)
    assert entry["client_port"] == "2600:1f18:147f:e850:e203:c906:ef5b:9fa5:51234"
    assert (entry.method, entry.host, entry.path) == ("GET", "shop.example.com", "/api/cart?x=1")
    assert split_request("GET http://[2001:db8::1]:80/a HTTP/1.1") == ("GET", "[2001:db8::1]", "/a")


def test_dashes_minus_ones_and_malformed_requests_are_valid_entries():
    failed = parse_line(AWS_LAMBDA_FAILED)
    assert (failed.elb_status, failed.target_status) == (502, None)
    assert failed["error_reason"] == "LambdaInvalidResponse"
    elb = parse_line(ELB_503)
    assert elb.target_processing_time == -1 and elb["target_port"] == "-"
    bad_request = parse_line(MALFORMED_REQUEST)
    assert bad_request.method == "-" and bad_request.elb_status == 400
    assert bad_request["target_group_arn"] == "-"


def test_quoted_user_agent_with_spaces_stays_one_field():
    entry = parse_line(MODERN)
    assert entry["user_agent"] == "Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0"
    assert entry["ssl_protocol"] == "TLSv1.2"


@pytest.mark.parametrize("name", sorted(AWS_EXAMPLES))
def test_lines_cut_before_the_trace_id_is_complete_are_refused(name):
    text = AWS_EXAMPLES[name]
    trace_end = text.index('"', text.index('"Root=') + 1) + 1
    for cut in range(0, trace_end):
        with pytest.raises(MalformedLine):
            parse_line(text[:cut])


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no quoted request"),
        ("\x00\xff\xfe\x01garbage", "no quoted request"),
        (AWS_HTTP.replace("2018-07-02T22:23:00.186641Z", "yesterday", 1), "time"),
        (AWS_HTTP.replace(" 200 200 ", " OK 200 ", 1), "elb_status_code"),
        (AWS_HTTP.replace(" 200 200 ", " 200 2xx ", 1), "target_status_code"),
        (AWS_HTTP.replace("0.000 0.001", "0.000 fast", 1), "target_processing_time"),
        (AWS_HTTP.replace("app/my-loadbalancer", "app/my loadbalancer", 1), "12 space-separated"),
        (AWS_HTTP.replace('" "curl', '"curl', 1), "user agent"),
    ],
)
def test_malformed_lines_say_which_rule_they_break(text, reason):
    assert reason in (diagnose(text) or "")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(max_size=400)
    | st.sampled_from(list(AWS_EXAMPLES.values())).flatmap(
        lambda base: st.tuples(st.integers(0, len(base)), st.text(max_size=20)).map(
            lambda cut: base[: cut[0]] + cut[1] + base[cut[0] :]
        )
    )
)
def test_the_python_reader_never_raises_anything_but_malformed_line(text):
    try:
        entry = parse_line(text)
    except MalformedLine as exc:
        assert str(exc)
    else:
        assert 100 <= entry.elb_status <= 599


def _scan(paths, tmp_path, counters=(), **kw):
    quarantine = Quarantine(tmp_path / "quarantine.jsonl")
    with quarantine:
        result = scan_alb([str(p) for p in paths], list(counters), quarantine=quarantine, **kw)
    records = []
    if quarantine.count:
        text = (tmp_path / "quarantine.jsonl").read_text(encoding="utf-8")
        records = [json.loads(x) for x in text.split("\n") if x]
    return result, records


def test_scanner_counts_every_line_once_and_quarantines_bad_ones_with_line_numbers(tmp_path):
    good = [line(f"2024-05-01T12:0{i}:00.000000Z") for i in range(5)]
    clean = tmp_path / "clean.log"
    clean.write_text("\n".join(good) + "\n")
    dirty = tmp_path / "dirty.log.gz"
    body = [good[0], good[1][:150], "\x00\x01binary garbage", good[2], "", good[3]]
    dirty.write_bytes(gzip.compress(("\n".join(body) + "\n").encode()))
    result, records = _scan([clean, dirty], tmp_path, [Counter("all")])
    assert result.source.lines == 5 + 5  # the blank line is not a line of the log
    assert result.source.parsed == 5 + 3
    assert result.source.malformed == 2
    assert result.series["all"].count_between(0, 2e9) == 8
    assert [(r["file"], r["line"]) for r in records] == [(str(dirty), 2), (str(dirty), 3)]
    assert "user agent" in records[0]["reason"]
    assert records[1]["text"] == "\\x00\\x01binary garbage"
    assert result.source.careful_files == [str(dirty)]


def test_fast_and_careful_paths_count_the_same(tmp_path):
    gen = load_generator()
    files = gen.generate(
        str(tmp_path / "logs"),
        3000,
        gen.parse_time("2024-05-01T00:00Z"),
        0.1,
        nodes=2,
        incidents=[gen.Incident.parse("at=2024-05-01T01:00Z,for=20m,errors=0.3")],
    )
    counters = [
        Counter("all"),
        Counter("5xx", "true", "elb_status >= 500"),
        Counter(
            "api",
            "starts_with(path, '/api/') AND method IN ('GET', 'POST')",
            "target_processing_time > 0.05",
        ),
    ]
    fast, _ = _scan(files, tmp_path, counters)
    assert fast.source.careful_files == [] and fast.source.parsed == 3000
    # One unreadable byte in each file sends every file down the careful path.
    for path in files:
        with open(path, "rb") as fh:
            data = gzip.decompress(fh.read()) + b"\xff\n"
        with open(path, "wb") as fh:
            fh.write(gzip.compress(data))
    careful, records = _scan(files, tmp_path, counters)
    assert sorted(careful.source.careful_files) == sorted(files)
    assert careful.source.malformed == len(files) == len(records)
    for c in counters:
        assert list(careful.series[c.name]) == list(fast.series[c.name])
    assert fast.series["5xx"].sum_between(0, 2e9) > 0


def test_sql_and_python_accept_the_same_lines(tmp_path):
    samples = [*AWS_EXAMPLES.values(), MODERN, ELB_503, MALFORMED_REQUEST]
    variants = []
    for text in samples:
        for cut in range(40, len(text), 23):
            variants.append(text[:cut])
        variants.append(text.replace(" ", "  ", 1))
        variants.append(text.replace('"', "", 1))
    path = tmp_path / "mixed.log"
    path.write_text("\n".join(variants) + "\n")
    _, records = _scan([path], tmp_path)
    refused = {r["line"] for r in records}
    for number, text in enumerate(variants, 1):
        assert (number in refused) == (diagnose(text) is not None), text
    assert "refused by the scanner" not in "".join(r["reason"] for r in records)


def test_the_fast_path_accepts_no_line_the_rules_refuse(tmp_path):
    # One line per file: a file the fast query passes holds a line the rules accept.
    samples = [*AWS_EXAMPLES.values(), MODERN, ELB_503, MALFORMED_REQUEST]
    variants = []
    for text in samples:
        variants += [text[:cut] for cut in range(40, len(text), 17)]
        variants += [text.replace(" ", "  ", 1), text.replace('"', "", 1)]
        variants.append(text.replace('" "', '" "a \\"quoted\\" agent', 1))
        variants.append(text.replace('" "', '" ""', 1))
        parts = text.split('"')  # drop a field before the trace id, then cut after the trace id
        mid = parts[4].split(" ")
        parts[4] = " ".join(mid[:1] + mid[2:])
        variants += ['"'.join(parts), '"'.join(parts[:6]) + '"']
    paths = []
    for i, text in enumerate(variants):
        paths.append(tmp_path / f"{i:04d}.log")
        paths[-1].write_text(text + "\n")
    result, records = _scan(paths, tmp_path, [Counter("all")])
    careful = set(result.source.careful_files)
    for path, text in zip(paths, variants, strict=True):
        if str(path) not in careful:
            assert diagnose(text) is None, text
    assert len(records) == sum(diagnose(t) is not None for t in variants) == result.source.malformed
    assert result.source.parsed == result.series["all"].count_between(0, 2e9)
    # A user agent holding a double quote is valid, but only the careful path can tell.
    odd = [t for t in variants if "quoted" in t and diagnose(t) is None]
    assert odd and all(str(paths[variants.index(t)]) in careful for t in odd)


_FRAGMENTS = (
    *("GET ", "POST ", "get ", "- ", " ", " HTTP/1.1", "https://", "http://", "://", "/", ":"),
    *("shop.example.com", "SHOP.Example.com", "shop.example.com.evil", ":443", ":8080", "[::1]"),
    *("/api/", "/api", "/apix", "?q=/api/", "x", "a/b", "%2F"),
)


def test_request_filter_agrees_with_splitting_every_request(tmp_path):
    rng = random.Random(5)

    def pick(usual, *odd):
        return usual if rng.random() < 0.7 else rng.choice(odd)

    # The usual shape, parts often odd (each shortcut of request_filter decides some), then anything
    requests = [
        pick(rng.choice(("GET ", "POST ")), "get ", "- ", "GET  ", "PUT ")
        + pick(rng.choice(("https://", "http://")), "h2://", "", "/x?u=https://", "a/b://")
        + pick("shop.example.com", "SHOP.Example.com", "shop.example.com.evil", "[::1]")
        + pick(rng.choice((":443", ":80")), ":8080", ":", "", ":443:1", "@x")
        + pick("/api/", "/api", "/apix/", "/", "", "?/api/", " /api/", "/x/api/")
        + rng.choice(("cart", "", "?q=1"))
        + rng.choice((" HTTP/1.1", "", " -"))
        for _ in range(1000)
    ]
    requests += [
        "".join(rng.choice(_FRAGMENTS) for _ in range(rng.randrange(1, 9))) for _ in range(500)
    ]
    path = tmp_path / "requests.log"
    with open(path, "w", encoding="utf-8") as fh:
        for minute, request in enumerate(requests):  # one minute each: counts are decisions
            when = f"2024-05-{1 + minute // 1440:02d}T{minute // 60 % 24:02d}:{minute % 60:02d}"
            fh.write(line(f"{when}:00.000000Z", request=request) + "\n")
    filters = [
        (("shop.example.com",), ("/api/",), ("GET", "POST")),
        (("shop.example.com",), (), ()),
        ((), ("/api/", "/x"), ()),
        ((), ("/",), ("GET",)),
        (("[::1]",), ("/api/",), ()),
    ]
    counters = []
    for i, (hosts, prefixes, methods) in enumerate(filters):
        counters.append(Counter(f"fast{i}", request_filter(hosts, prefixes, methods)))
        exact = ["true"]
        if hosts:
            exact.append("host IN (" + ", ".join(f"'{h}'" for h in hosts) + ")")
        if prefixes:
            exact.append("(" + " OR ".join(f"starts_with(path, '{p}')" for p in prefixes) + ")")
        if methods:
            exact.append("method IN (" + ", ".join(f"'{m}'" for m in methods) + ")")
        counters.append(Counter(f"exact{i}", " AND ".join(exact)))
    result, records = _scan([path], tmp_path, counters)
    assert records == [] and result.source.parsed == len(requests)
    for i in range(len(filters)):
        fast, exact = result.series[f"fast{i}"], result.series[f"exact{i}"]
        assert list(fast) == list(exact), filters[i]
        assert 0 < exact.count_between(0, 2e9) < len(requests), filters[i]
    shortcuts = request_filter(*filters[0])
    assert "starts_with(request, 'POST http://shop.example.com:80/api/')" in shortcuts
    assert "regexp_matches(request, " in shortcuts and "alb_path(request)" in shortcuts
    assert request_filter(*filters[-1]) == "host IN ('[::1]') AND (starts_with(path, '/api/'))"


def test_damaged_gzip_keeps_the_lines_before_the_damage(tmp_path):
    data = gzip.compress(("\n".join(line() for _ in range(2000)) + "\n").encode())
    path = tmp_path / "cut.log.gz"
    path.write_bytes(data[: len(data) // 2])
    result, records = _scan([path], tmp_path, [Counter("all")])
    assert 0 < result.source.parsed < 2000
    assert result.source.malformed == 1
    assert "gzip stream unreadable" in records[-1]["reason"]
    assert records[-1]["line"] == result.source.parsed + 1


def test_undecodable_bytes_in_a_valid_line_are_kept(tmp_path):
    raw = line(request="GET https://shop.example.com:443/caf\xe9 HTTP/1.1").encode("latin-1")
    path = tmp_path / "latin1.log"
    path.write_bytes(raw + b"\n" + line().encode() + b"\n")
    result, records = _scan([path], tmp_path, [Counter("all")])
    assert (result.source.parsed, result.source.malformed, records) == (2, 0, [])


def test_entries_after_at_are_parsed_but_not_counted(tmp_path):
    from datetime import UTC, datetime

    path = tmp_path / "a.log"
    path.write_text("\n".join(line(f"2024-05-01T12:{m:02d}:30.000000Z") for m in range(10)) + "\n")
    at = datetime(2024, 5, 1, 12, 4, 30, tzinfo=UTC)
    result, _ = _scan([path], tmp_path, [Counter("all")], at=at)
    assert result.source.parsed == 10
    assert result.series["all"].count_between(0, 2e9) == 5
    from datetime import timedelta, timezone

    paris = at.astimezone(timezone(timedelta(hours=2)))  # the same instant, another offset
    result, _ = _scan([path], tmp_path, [Counter("all")], at=paris)
    assert result.series["all"].count_between(0, 2e9) == 5


def test_directories_are_searched_in_the_aws_layout(tmp_path):
    gen = load_generator()
    files = gen.generate(str(tmp_path), 200, gen.parse_time("2024-05-01T00:00Z"), 0.02, nodes=2)
    (tmp_path / "AWSLogs" / "ELBAccessLogTestFile").write_text("test\n")
    assert find_log_files([tmp_path]) == sorted(files)
    assert "/elasticloadbalancing/us-east-1/2024/05/01/" in files[0]
    assert files[0].endswith(".log.gz") and "_app.shop-prod.50dc6c495c0c9188_" in files[0]
    with pytest.raises(FileNotFoundError, match="no such file"):
        find_log_files([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no access log files"):
        find_log_files([tmp_path / "empty"])


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.binary(max_size=300)
        | st.sampled_from([MODERN, AWS_HTTP, ELB_503]).map(str.encode)
        | st.sampled_from([MODERN, AWS_HTTP]).flatmap(
            lambda base: st.tuples(st.integers(0, len(base)), st.binary(max_size=8)).map(
                lambda cut: base.encode()[: cut[0]] + cut[1] + base.encode()[cut[0] :]
            )
        ),
        max_size=12,
    ),
    st.booleans(),
)
def test_no_file_content_crashes_the_scanner_and_every_line_is_accounted_for(
    tmp_path_factory, lines, compress
):
    tmp_path = tmp_path_factory.mktemp("fuzz")
    body = b"\n".join(x.replace(b"\n", b" ") for x in lines) + b"\n"
    path = tmp_path / ("f.log.gz" if compress else "f.log")
    path.write_bytes(gzip.compress(body) if compress else body)
    result, records = _scan([path], tmp_path, [Counter("all")])
    expected = sum(1 for x in body.split(b"\n")[:-1] if x.rstrip(b"\r"))
    assert result.source.lines == expected
    assert result.source.parsed + result.source.malformed == expected
    assert len(records) == result.source.malformed
    assert result.series["all"].count_between(0, 2**40) == result.source.parsed


def test_a_huge_line_is_set_aside_and_the_next_one_read(tmp_path):
    path = tmp_path / "huge.log"
    path.write_bytes(b"x" * (3 << 20) + b"\n" + line().encode() + b"\n")
    result, records = _scan([path], tmp_path, [Counter("all")])
    assert (result.source.lines, result.source.parsed, result.source.malformed) == (2, 1, 1)
    assert records[0]["line"] == 1 and len(records[0]["text"]) == 1 << 20


def test_the_generator_is_deterministic(tmp_path):
    gen = load_generator()
    start = gen.parse_time("2024-05-01T00:00Z")
    incident = [gen.Incident.parse("at=2024-05-01T00:10Z,for=5m,errors=0.5")]
    a = gen.generate(str(tmp_path / "a"), 500, start, 0.02, nodes=2, incidents=incident)
    b = gen.generate(str(tmp_path / "b"), 500, start, 0.02, nodes=2, incidents=incident)
    assert [p.replace("/a/", "/b/") for p in a] == b
    for x, y in zip(a, b, strict=True):
        with open(x, "rb") as fx, open(y, "rb") as fy:
            assert fx.read() == fy.read()
    lines = list(gen.iter_lines(a))
    assert len(lines) == 500 and all(diagnose(t) is None for t in lines)
    errors = [e for e in map(parse_line, lines) if e.elb_status >= 500]
    during = [e for e in errors if "00:10:" <= e["time"][11:17] < "00:15:"]
    assert len(during) >= 20 and len(during) >= len(errors) - 2  # half the incident's requests
