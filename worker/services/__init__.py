"""What the API and the CLI both do to accounts, campaigns and automations: no HTTP, no Celery."""
