# The hamur-dist training image: the official Ray image of the Ray version pinned in pyproject.toml,
# plus torch (pinned) and this package. The source tree stays at /home/ray/hamur-dist: the RayJobs
# in k8s/ use it as their runtime-env working_dir, so `python jobs/train.py --config configs/...`
# resolves there.
#
#   CPU: docker build -t hamur-dist:0.1.0-cpu .
#   GPU: docker build -t hamur-dist:0.1.0-gpu \
#          --build-arg BASE_IMAGE=rayproject/ray:2.60.0-py311-gpu --build-arg TORCH_INDEX_URL= .
ARG BASE_IMAGE=rayproject/ray:2.60.0-py311-cpu
FROM ${BASE_IMAGE}

# Where torch comes from. The default, PyTorch's CPU index, gives the small CPU-only build; an empty
# value uses PyPI, whose Linux wheels carry CUDA (for the GPU image).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG APP_DIR=/home/ray/hamur-dist
# Two malloc arenas per process, not 8 per core: a training worker's memory stays flat over epochs
# (see hamur_dist/ray_connection.py and the soak in docs/reliability.md). Every Ray process in the pod inherits it.
ENV MALLOC_ARENA_MAX=2

# torch first, in a layer of its own: it is by far the largest dependency and changes least often.
RUN pip install --no-cache-dir ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch==2.13.0

# The base image runs as user ray; pip builds in the source tree, so ray must own it.
USER root
RUN mkdir -p ${APP_DIR} && chown ray:users ${APP_DIR}
USER ray
COPY --chown=ray:users . ${APP_DIR}
WORKDIR ${APP_DIR}
# torch==2.13.0 is already satisfied, so pip keeps the build chosen above; Ray is the base image's.
RUN pip install --no-cache-dir . \
 && rm -rf build hamur_dist.egg-info \
 && python -c "import hamur_dist, ray, torch; assert ray.__version__ == '2.60.0', ray.__version__"
