"""Hypothesis profiles: ``dev`` (the default, for ``make test``) and ``nightly``
(``HYPOTHESIS_PROFILE=nightly``, run by ``make fuzz``).

Property tests that set their own ``max_examples`` keep it under either profile;
the differential test (``tests/unit/test_differential.py``) takes it from here.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("dev", max_examples=150, deadline=None)
settings.register_profile("nightly", max_examples=4000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# The broker fixtures (redis_url, nats_url, kafka_bootstrap and the per-test names); client
# libraries load only when a test asks for one of them.
pytest_plugins = ["brokers"]
