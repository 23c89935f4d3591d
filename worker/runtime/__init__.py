"""Celery's side: the app and its signals, beat, heartbeats, each process's clients."""
