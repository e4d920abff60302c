"""Flagstream's pure domain: no I/O, no clock, no random ids (``tests/unit/core/test_purity.py``).

Modules (import them directly; this package re-exports nothing, to stay cheap to import):

- :mod:`core.model` — flags, environment configurations, rules, conditions, segments;
- :mod:`core.envelope` — the event envelope, ``seal`` and the hash chain (``verify_chain``);
- :mod:`core.errors` — the one error tree (``FlagstreamError``, ``DomainError`` and friends);
- :mod:`core.commands` — what producers ask for;
- :mod:`core.events` — event types, payload models, upcasting (``read_payload``);
- :mod:`core.state` — ``FlagState``, ``SegmentState``, ``Catalog``;
- :mod:`core.decide` — ``decide`` / ``decide_segment``: command + state -> event drafts;
- :mod:`core.evolve` — ``evolve`` / ``evolve_segment`` / ``replay`` / ``replay_segment``;
- :mod:`core.validation` — cross-reference validation with field paths;
- :mod:`core.diff` — field-level diffs for audit trails;
- :mod:`core.conditions` — walking condition trees;
- :mod:`core.evaluation` — compiled, never-raising evaluation.
"""
