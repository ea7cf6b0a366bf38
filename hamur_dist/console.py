"""What a person watches while a run trains: our own lines and one progress bar per epoch.

Every Ray process's output reaches the driver as batches of lines. ``RayOutputRouter`` appends all
of them to the run's log file (``ray.log``) and shows only ours: lines that start with ``[hamur] ``,
and rank 0's ``[hamur:progress] {json}`` lines, which drive ``ConsoleView``'s progress bar (a tqdm
bar on a terminal, a plain line per update elsewhere, e.g. in ``ray job logs``). With ``verbose``
every line is shown as well. ``ray_logging_to`` moves Ray's own Python logging (driver side) into the
same file, ``show_worker_output`` installs the router, both for the length of a run.
"""
from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
from pathlib import Path

SHOW = "[hamur] "
PROGRESS = "[hamur:progress] "
DETAIL = "[hamur:detail] "      # kept in the log file, not shown
LOG_FILE = "ray.log"
RAY_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune")


def progress_message(epoch: int, seen: int, expected: int, loss: float, rate: float) -> str:
    return PROGRESS + json.dumps({"epoch": epoch, "seen": seen, "expected": expected,
                                  "loss": round(loss, 5), "rate": round(rate, 1)})


def shown_lines(message: str) -> str:
    """``message`` with every line marked to be shown (a multi-line message arrives line by line)."""
    return "\n".join(line if line.startswith(SHOW) else SHOW + line for line in message.splitlines() or [""])


def say(message: str) -> None:
    """From a Ray worker: a line for the person watching the run. Printed to the process's real
    stdout: Ray Train patches ``print`` to log *and* tee to it (shown twice)."""
    print(shown_lines(message), file=sys.__stdout__, flush=True)


def detail(message: str) -> None:
    """From a Ray worker: a line for the run's log file only."""
    print(DETAIL + message, file=sys.__stdout__, flush=True)


class ConsoleView:
    """Renders shown lines and progress events on ``stream``; thread-safe (Ray calls from its log thread).
    Without a terminal, progress is a line at most every ``LINE_EVERY_S`` (logs stay readable)."""

    LINE_EVERY_S = 10.0

    def __init__(self, stream=None, bar: bool | None = None):
        self.stream = stream or sys.stdout
        self.use_bar = self.stream.isatty() if bar is None else bar
        self._bar = None
        self._bar_epoch = None
        self._last_line = -float("inf")
        self._lock = threading.Lock()

    def show(self, text: str) -> None:
        with self._lock:
            self._close_bar()
            print(text, file=self.stream, flush=True)

    def progress(self, event: dict) -> None:
        with self._lock:
            if not self.use_bar:
                if time.monotonic() - self._last_line < self.LINE_EVERY_S:
                    return
                self._last_line = time.monotonic()
                eta = max(event["expected"] - event["seen"], 0) / max(event["rate"], 1e-9)
                print(f"{SHOW}epoch {event['epoch']}: {event['seen']:,}/{event['expected']:,} samples, "
                      f"loss {event['loss']:.4f}, {event['rate']:,.0f} samples/s, ETA {eta:.0f}s",
                      file=self.stream, flush=True)
                return
            from tqdm import tqdm

            if self._bar is None or self._bar_epoch != event["epoch"]:
                self._close_bar()
                self._bar = tqdm(total=event["expected"], desc=f"epoch {event['epoch']}", unit=" samples",
                                 unit_scale=True, file=self.stream, leave=False, dynamic_ncols=True)
                self._bar_epoch = event["epoch"]
            self._bar.update(max(0, min(event["seen"], event["expected"]) - self._bar.n))
            self._bar.set_postfix(loss=f"{event['loss']:.4f}", refresh=True)

    def close(self) -> None:
        with self._lock:
            self._close_bar()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar, self._bar_epoch = None, None


class RayOutputRouter:
    """Called with each batch of output lines Ray forwards to the driver (see the module docstring)."""

    def __init__(self, view: ConsoleView, log_path: Path, verbose: bool = False, ours: bool = True):
        self.view, self.verbose, self.ours = view, verbose, ours
        self.log = open(log_path, "a", encoding="utf-8")
        self._lock = threading.Lock()
        self.last_batch = time.monotonic()

    def wait_quiet(self, quiet_s: float = 0.5, at_most_s: float = 3.0) -> None:
        """Let the last lines of a finished run arrive (Ray forwards them with a delay)."""
        deadline = time.monotonic() + at_most_s
        while time.monotonic() < deadline and time.monotonic() - self.last_batch < quiet_s:
            time.sleep(0.1)

    def __call__(self, data: dict) -> None:
        self.last_batch = time.monotonic()
        lines = data.get("lines") or []
        source = data.get("actor_name") or data.get("task_name") or "ray"
        prefix = f"({source} pid={data.get('pid')}, ip={data.get('ip')}) "
        with self._lock:
            if not self.log.closed:
                self.log.writelines(prefix + line + "\n" for line in lines)
                self.log.flush()
        for line in lines:
            if not self.ours and line.startswith((PROGRESS, SHOW)):
                continue   # several runs at once (hamur compare): their lines would interleave unnamed
            if line.startswith(PROGRESS):
                try:
                    self.view.progress(json.loads(line[len(PROGRESS):]))
                except (ValueError, KeyError):
                    pass   # a torn or foreign line: it is in the log file
            elif line.startswith(SHOW):
                self.view.show(line)
            elif self.verbose or (data.get("pid") == "raylet" and not line.lstrip().startswith("WARNING")):
                # the cluster's own error messages (a task killed for memory, ...); its warnings
                # (workers started, ...) are only in the log file
                self.view.show(prefix + line)

    def close(self) -> None:
        with self._lock:
            self.log.close()


class _ErrorsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


@contextlib.contextmanager
def ray_logging_to(log_path: Path, verbose: bool = False):
    """Ray's Python loggers in this process write to ``log_path``; their console output is held back
    (errors still show) unless ``verbose``."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(log_path, encoding="utf-8")
    file_handler.setLevel(logging.INFO)   # Ray Data's logger passes DEBUG: thousands of lines a run
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    quiet = _ErrorsOnly()
    loggers = [logging.getLogger(name) for name in RAY_LOGGERS]
    consoles = {h for lg in loggers for h in lg.handlers
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)}
    # "ray" itself, and each logger whose records do not propagate up to it (Ray Data's): once each
    targets = [lg for lg in loggers if lg.name == "ray" or not lg.propagate]
    for lg in targets:
        lg.addHandler(file_handler)
    if not verbose:
        for handler in consoles:
            handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in consoles:
            handler.removeFilter(quiet)
        for lg in targets:
            lg.removeHandler(file_handler)
        file_handler.close()


@contextlib.contextmanager
def show_worker_output(log_path: Path, verbose: bool = False, stream=None, ours: bool = True):
    """While a run trains on this driver: Ray processes' output to ``log_path``, ours to the console
    (module docstring; ``ours=False``: our workers' lines too go only to the file). Needs Ray
    initialised. Yields the ``ConsoleView``."""
    from hamur_dist.ray_internals import worker_output_to

    view = ConsoleView(stream)
    router = RayOutputRouter(view, log_path, verbose, ours)
    try:
        with worker_output_to(router):
            try:
                yield view
            finally:
                router.wait_quiet()
    finally:
        view.close()
        router.close()
