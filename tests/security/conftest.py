"""The security tests attack the real stack: the integration tests' fixtures (a tenant on
the running API, workers, beat and simulator), and API processes of their own with other
settings on the same store."""

from __future__ import annotations

from tests.integration.conftest import (  # noqa: F401  (fixtures)
    ApiFactory,
    api_process,
    fcm_sender,
    http,
    other_tenant,
    push_tenant,
    push_tenant_factory,
    tenant,
)
