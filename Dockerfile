FROM python:3.11-slim
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
# torch is pinned to 2.13.0; point this at an index of CPU-only wheels to keep the image small
ARG PIP_EXTRA_INDEX_URL=
ENV PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL}
COPY pyproject.toml README.md config.toml ./
COPY gateway gateway
COPY mechanisms mechanisms
COPY budget budget
COPY training training
COPY bench bench
RUN pip install '.[postgres]'
ENV DPGATE_DATA_DIR=/data
VOLUME /data
ENTRYPOINT ["dpgate"]
CMD ["demo"]
