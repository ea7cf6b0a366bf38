"""The console: our lines shown, Ray's output to the run's log file, progress rendered, no Ray needed."""
from __future__ import annotations

import io
import json
import logging

from hamur_dist.console import (ConsoleView, RayOutputRouter, progress_message, ray_logging_to, shown_lines)


def _batch(*lines: str, pid=123, actor="RayTrainWorker") -> dict:
    return {"lines": list(lines), "pid": pid, "ip": "10.0.0.1", "actor_name": actor, "is_err": False}


def test_only_our_lines_are_shown_and_every_line_is_logged(tmp_path):
    out = io.StringIO()
    router = RayOutputRouter(ConsoleView(out, bar=False), tmp_path / "ray.log")
    router(_batch("Reporting training result 1: TrainingReport(checkpoint=None, metrics={...})",
                  "[hamur] epoch 0: train loss 0.5, val AUC 0.8",
                  "/x/iterator.py:577: RayDeprecationWarning: Passing a function is deprecated",
                  "[hamur:detail] epoch 0: worker memory MB ..."))
    router(_batch("WARNING: 8 PYTHON worker processes have been started", pid="raylet", actor=None))
    router(_batch("Task was killed due to the node running low on memory.", pid="raylet", actor=None))
    router.close()
    assert out.getvalue().splitlines() == [
        "[hamur] epoch 0: train loss 0.5, val AUC 0.8",
        "(ray pid=raylet, ip=10.0.0.1) Task was killed due to the node running low on memory."]
    log = (tmp_path / "ray.log").read_text().splitlines()
    assert len(log) == 6 and log[0].startswith("(RayTrainWorker pid=123, ip=10.0.0.1) Reporting training result")


def test_verbose_shows_everything(tmp_path):
    out = io.StringIO()
    router = RayOutputRouter(ConsoleView(out, bar=False), tmp_path / "ray.log", verbose=True)
    router(_batch("Checkpoint successfully created", "[hamur] epoch 0"))
    assert out.getvalue().splitlines() == ["(RayTrainWorker pid=123, ip=10.0.0.1) Checkpoint successfully created",
                                           "[hamur] epoch 0"]


def test_progress_lines_without_a_terminal_are_spaced_and_a_bad_one_is_ignored(tmp_path):
    out = io.StringIO()
    router = RayOutputRouter(ConsoleView(out, bar=False), tmp_path / "ray.log")
    router(_batch(progress_message(0, 4096, 40960, 0.5, 2048.0), progress_message(0, 8192, 40960, 0.4, 4096.0),
                  "[hamur:progress] {not json"))
    assert out.getvalue().splitlines() == ["[hamur] epoch 0: 4,096/40,960 samples, loss 0.5000, 2,048 samples/s, ETA 18s"]


def test_a_terminal_gets_one_bar_per_epoch_cleared_before_the_epoch_line(tmp_path):
    out = io.StringIO()
    view = ConsoleView(out, bar=True)
    for seen in (1000, 2000, 4000):
        view.progress(json.loads(progress_message(0, seen, 4000, 0.5, 100.0)[len("[hamur:progress] "):]))
    assert view._bar is not None and view._bar.n == 4000 and "epoch 0" in out.getvalue()
    view.show("[hamur] epoch 0: train loss 0.5")
    assert view._bar is None and out.getvalue().endswith("[hamur] epoch 0: train loss 0.5\n")


def test_multi_line_messages_are_marked_line_by_line():
    assert shown_lines("embedding plan:\ntable  mode") == "[hamur] embedding plan:\n[hamur] table  mode"


def test_ray_loggers_write_to_the_file_not_the_console(tmp_path):
    logger = logging.getLogger("ray.data")
    console = io.StringIO()
    handler = logging.StreamHandler(console)
    logger.addHandler(handler)
    try:
        with ray_logging_to(tmp_path / "ray.log"):
            logger.warning("Progress bars disabled")
            logging.getLogger("ray.data._internal.stats").error("a real error")
            logging.getLogger("ray.data").debug("debug chatter")
        logger.warning("after the run")
    finally:
        logger.removeHandler(handler)
    assert console.getvalue().splitlines() == ["a real error", "after the run"]
    text = (tmp_path / "ray.log").read_text()
    assert "Progress bars disabled" in text and "a real error" in text
    assert "debug chatter" not in text and "after the run" not in text
