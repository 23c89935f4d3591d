"""Provider adapters: bytes in, results or ``worker.errors`` out. No Redis, no accounts."""
