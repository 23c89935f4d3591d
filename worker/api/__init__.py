"""The HTTP API: validates, authenticates, stores and enqueues. It never calls a provider."""
