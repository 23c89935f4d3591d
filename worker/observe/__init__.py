"""What operators see: logs, Prometheus metrics, `dispatch status`."""
