"""Our code uses other packages through their public APIs only (issue #20).

No attribute or method whose name starts with ``_`` is read, written or replaced on an object of
another package, no class of ours overrides another package's private method, and no module of
ours patches another package for the whole process. What counts as ours and which names starting
with ``_`` are public anyway (a Row's ``_mapping``, ``__name__``, ``object.__setattr__(self, ...)``
in a frozen dataclass of ours...) is written in tests/support/public_apis.py, which is tested on
its own in test_public_apis_scanner.py.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.public_apis import scan_tree

ROOT = Path(__file__).resolve().parents[2]


def test_shared_services_and_guanhuai_use_other_packages_public_apis_only() -> None:
    findings = scan_tree(ROOT, ("shared", "services", "guanhuai"))
    for finding in findings:
        print(finding)
    assert not findings, f"{len(findings)} use(s) of other packages' internals (printed above)"
