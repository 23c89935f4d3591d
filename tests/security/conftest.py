"""The security tests attack the real stack: the integration tests' fixtures (a tenant on
the running API, workers, beat and simulator)."""

from tests.integration.conftest import (  # noqa: F401  (fixtures)
    http,
    other_tenant,
    push_tenant,
    push_tenant_factory,
    tenant,
)
