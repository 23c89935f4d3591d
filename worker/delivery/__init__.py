"""The send algorithm per channel: plain async code, no Celery inside."""
