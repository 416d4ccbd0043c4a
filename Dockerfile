FROM python:3.11-slim
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
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
