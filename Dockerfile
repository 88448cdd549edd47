# syntax=docker/dockerfile:1
# Two images from one lock (uv.lock):
#   engine     (default target) the precompute job and the backend: torch, transformers, the model; `neuron-atlas …`
#   dashboard  the Dash app under gunicorn: the dashboard dependency group only, no torch
# Dependencies are installed from the lock before the source is copied, so a code change rebuilds only the last
# layers. CUDA comes with PyPI's torch wheels; the host needs the NVIDIA driver and container toolkit for GPU services.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS uv
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 UV_PROJECT_ENVIRONMENT=/opt/venv
COPY tools/uv-requirements.txt /tmp/uv-requirements.txt
RUN pip install --require-hashes --no-deps -r /tmp/uv-requirements.txt
WORKDIR /src

# ---------------------------------------------------------------------------------------------------------- engine
FROM uv AS engine-build
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv uv sync --frozen --no-install-project --extra ray
COPY . .
RUN --mount=type=cache,target=/root/.cache/uv uv sync --frozen --no-editable --extra ray

FROM ${PYTHON_IMAGE} AS engine
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH \
    NEURON_ATLAS_CACHE=/cache HF_HOME=/models
RUN useradd --create-home --uid 1000 atlas && mkdir -p /data /findings /cache /models \
    && chown -R atlas /data /findings /cache /models
COPY --from=engine-build /opt/venv /opt/venv
USER atlas
WORKDIR /home/atlas
ENTRYPOINT ["neuron-atlas"]
CMD ["--help"]

# ------------------------------------------------------------------------------------------------------- dashboard
FROM uv AS dashboard-build
COPY pyproject.toml uv.lock ./
RUN uv export --frozen --no-default-groups --only-group dashboard --no-emit-project -o /tmp/dashboard.txt \
    && uv venv /opt/venv && uv pip install --python /opt/venv/bin/python --require-hashes --no-deps -r /tmp/dashboard.txt
COPY . .
RUN uv build --wheel -o /tmp/dist && uv pip install --python /opt/venv/bin/python --no-deps /tmp/dist/*.whl

FROM ${PYTHON_IMAGE} AS dashboard
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH
RUN useradd --create-home --uid 1000 atlas
COPY --from=dashboard-build /opt/venv /opt/venv
USER atlas
WORKDIR /home/atlas
EXPOSE 8050
# Workers are independent copies of the app (no shared state); threads serve concurrent callbacks of one worker.
CMD ["gunicorn", "app.wsgi:server", "--bind", "0.0.0.0:8050", "--workers", "2", "--threads", "8", \
     "--worker-class", "gthread", "--timeout", "180"]
