"""Quiet known-useless Ray log lines in every worker process of a Ray that hamur starts.

``ray.init(runtime_env=LOCAL_RUNTIME_ENV)`` runs :func:`quiet_known_noise` in each worker process
(Ray's ``worker_process_setup_hook``) before it runs any task or actor.
"""
from __future__ import annotations

import logging

# Ray Train's PlacementGroupCleaner asks the State API every second whether the controller lives.
# The State API needs the dashboard, which hamur's local Ray does not start, so every question
# logs "Failed to query Ray Train Controller actor state" for the whole run: pure noise.
NOISY_LOGGERS = ("ray.train.v2._internal.execution.controller.placement_group_cleaner",)

LOCAL_RUNTIME_ENV = {"worker_process_setup_hook": f"{__name__}.quiet_known_noise"}


def quiet_known_noise() -> None:
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
