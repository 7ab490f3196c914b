# The web app's map library comes from the npm registry (web/package-lock.json pins it).
FROM node:20-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY web ./

FROM python:3.11-slim
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 && rm -rf /var/lib/apt/lists/*
# The CPU build of torch first, so that no CUDA build is pulled in: point PIP_INDEX_URL (build arg)
# at an index that serves CPU wheels of torch 2.13.0.
ARG PIP_INDEX_URL
RUN pip install --no-cache-dir torch==2.13.0
COPY pyproject.toml README.md ./
COPY models models
COPY indexer indexer
COPY geo geo
COPY services services
COPY scripts/opencv_contrib.sh scripts/
RUN pip install --no-cache-dir . && scripts/opencv_contrib.sh
COPY --from=web /web /app/web
ENV SIGHTLINE_WEB_DIR=/app/web
# The audit log's key and signed checkpoint outside the data volume: mount /audit (docker-compose.yml does)
ENV SIGHTLINE_AUDIT_KEY_FILE=/audit/audit.key SIGHTLINE_AUDIT_CHECKPOINT=/audit/checkpoint.json
VOLUME ["/data", "/audit"]
EXPOSE 8000
CMD ["sightline", "--data", "/data", "serve", "--host", "0.0.0.0", "--port", "8000"]
