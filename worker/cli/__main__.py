"""``python -m worker.cli``: how `dispatch up` and the tests start each child process."""

from worker.cli.main import main

main()
