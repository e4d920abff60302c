from __future__ import annotations

from events.store.idempotency import compute_request_hash


def test_request_hash__key_order_and_spacing__do_not_matter() -> None:
    assert compute_request_hash("post", "/f", {"a": 1, "b": [1, 2]}) == compute_request_hash(
        "POST", "/f", {"b": [1, 2], "a": 1}
    )


def test_request_hash__other_path_or_body__differs() -> None:
    base = compute_request_hash("POST", "/f", {"a": 1})
    assert base != compute_request_hash("POST", "/g", {"a": 1})
    assert base != compute_request_hash("PUT", "/f", {"a": 1})
    assert base != compute_request_hash("POST", "/f", {"a": 2})
    assert len(base) == 64
