# One image for the dataflow, the producer and the web app (see compose.yaml).
FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY fraudwatch ./fraudwatch
COPY dataflows ./dataflows
COPY producer ./producer
COPY webapp ./webapp
COPY devtools ./devtools
COPY config ./config
RUN pip install --no-cache-dir . && useradd --system --uid 10001 fraudwatch
USER fraudwatch
