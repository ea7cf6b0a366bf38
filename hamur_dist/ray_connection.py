"""The runtime environment of the local Ray that hamur starts (``ray.init(runtime_env=LOCAL_RUNTIME_ENV)``).

* ``worker_process_setup_hook``: :func:`quiet_known_noise` runs in each worker process before it
  runs any task or actor.
* ``env_vars``: set in every worker process before it starts. ``MALLOC_ARENA_MAX=2``: glibc gives
  each new thread its own malloc arena, up to 8 per core. With 16 arenas a training worker's private
  memory crept up 20-30 MB an epoch (new ~5 MB pieces spread over the arenas while the live Python
  objects and tensors stayed the same: fragmentation); with 2 it stayed flat at the same samples/s (docs/reliability.md,
  soak). glibc reads it only at process start, hence an environment variable; a value already in
  the environment is kept. On a cluster, set it in the image or the job's ``env_vars`` (our
  Dockerfile does).
"""
from __future__ import annotations

import logging
import os

# Ray Train's PlacementGroupCleaner asks the State API every second whether the controller lives.
# The State API needs the dashboard, which hamur's local Ray does not start, so every question
# logs "Failed to query Ray Train Controller actor state" for the whole run: pure noise.
NOISY_LOGGERS = ("ray.train.v2._internal.execution.controller.placement_group_cleaner",)

WORKER_ENV = {"MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2")}

LOCAL_RUNTIME_ENV = {"worker_process_setup_hook": f"{__name__}.quiet_known_noise", "env_vars": WORKER_ENV}


def quiet_known_noise() -> None:
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
