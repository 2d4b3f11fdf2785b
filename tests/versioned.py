"""Two versions of one test workflow, for the deploy tests: V1 (4 steps) and V2 (a step more, one retry policy changed).

Both take orders from the test order topics; an outcome's ``steps`` says how
many steps its run had (4 on V1, 5 on V2), so a test sees which version a
run finished on. ``RENAMED`` renames V1's step ``c`` (a breaking change for
in-flight V1 runs); ``PATCHED`` is V1 with a step patched in (``since="v2"``):
one declaration that finishes V1 runs without it and runs it for new ones.
"""

from __future__ import annotations

import dataclasses

from processors.engine import RetryPolicy, Step
from tests.workflows import _slow, _wf

_V1_STEPS = (
    Step("a", _slow),
    Step("b", _slow, after=("a",)),
    Step("c", _slow, after=("a",)),
    Step("d", _slow, after=("b", "c")),
)

V1 = dataclasses.replace(_wf("versioned", _V1_STEPS), version="v1")

V2 = dataclasses.replace(
    _wf(
        "versioned",
        (
            *(dataclasses.replace(s, retry=RetryPolicy(max_attempts=5)) if s.name == "b" else s for s in _V1_STEPS),
            Step("e", _slow, after=("d",)),
        ),
    ),
    version="v2",
)

RENAMED = dataclasses.replace(
    _wf(
        "versioned",
        (
            Step("a", _slow),
            Step("b", _slow, after=("a",)),
            Step("c_renamed", _slow, after=("a",)),
            Step("d", _slow, after=("b", "c_renamed")),
        ),
    ),
    version="v1-renamed",
)

PATCHED = dataclasses.replace(
    V1, steps=(*_V1_STEPS, Step("e", _slow, after=("d",), since="v2")), version="v2", continues=("v1",)
)
