# One image for the three services (precompute job, backend, app). CUDA comes with PyPI's torch wheels;
# the host needs the NVIDIA driver and container toolkit for the GPU services.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    NEURON_ATLAS_CACHE=/cache \
    HF_HOME=/models

WORKDIR /opt/neuron-atlas
COPY pyproject.toml README.md ./
COPY neuron_atlas ./neuron_atlas
COPY backend ./backend
COPY precompute ./precompute
COPY app ./app
COPY assets ./assets
COPY configs ./configs
RUN pip install ".[ray]"

RUN useradd --create-home --uid 1000 atlas && mkdir -p /data /findings /cache /models \
    && chown -R atlas /data /findings /cache /models
USER atlas
ENTRYPOINT ["neuron-atlas"]
CMD ["--help"]
