"""Rate-limit pieces without servers: quotas, classes, the per-process bucket, the header fields."""

from __future__ import annotations

import pytest

from api.ratelimit import LocalBuckets, Quota, Verdict, classify_request, parse_quota


def test_parse_quota__requests_per_window() -> None:
    assert parse_quota("100/60") == Quota(100, 60.0)
    assert parse_quota("5") == Quota(5, 1.0)


@pytest.mark.parametrize("text", ["0/1", "5/0", "x/1", "-1/2"])
def test_parse_quota__nonsense__refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_quota(text)


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("POST", "/api/v1/evaluate", "", "evaluation"),
        ("POST", "/ofrep/v1/evaluate/flags/x", "", "evaluation"),
        ("POST", "/api/v1/evaluate", "as_of=2026-01-01T00:00:00Z", "audit"),
        ("GET", "/api/v1/audit/flags/x/history", "", "audit"),
        ("POST", "/api/v1/flags", "", "commands"),
        ("GET", "/healthz", "", None),
        ("GET", "/metrics", "", None),
        ("GET", "/ui/login", "", None),
    ],
)
def test_classify_request(method: str, path: str, query: str, expected: str | None) -> None:
    assert classify_request(method, path, query) == expected


def test_local_bucket__burst_then_refill_at_the_rate() -> None:
    now = [100.0]
    buckets = LocalBuckets(clock=lambda: now[0])
    quota = Quota(3, 3.0)  # one token a second

    burst = [buckets.take("k", quota)[0] for _ in range(4)]
    refused_wait = buckets.take("k", quota)[2]
    now[0] += 1.0
    after_a_second = buckets.take("k", quota)[0]
    other_key = buckets.take("other", quota)[0]

    assert burst == [True, True, True, False]
    assert 0 < refused_wait <= 1.0
    assert after_a_second is True
    assert other_key is True


def test_local_bucket__bounded_number_of_buckets() -> None:
    buckets = LocalBuckets(max_buckets=10)
    for i in range(50):
        buckets.take(f"k{i}", Quota(1, 1.0))
    assert len(buckets._buckets) == 10


def test_verdict_headers__ietf_draft_fields_and_retry_after_when_refused() -> None:
    allowed = Verdict(True, "evaluation", Quota(100, 1.0), 42, 0.0, True)
    refused = Verdict(False, "commands", Quota(10, 60.0), 0, 5.2, False)

    assert dict(allowed.headers()) == {
        b"ratelimit-policy": b'"evaluation";q=100;w=1',
        b"ratelimit": b'"evaluation";r=42;t=0',
    }
    assert dict(refused.headers()) == {
        b"ratelimit-policy": b'"commands";q=10;w=60',
        b"ratelimit": b'"commands";r=0;t=6',
        b"retry-after": b"6",
    }
