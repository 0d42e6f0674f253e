# syntax=docker/dockerfile:1
# Build: docker build -t ai-dev-companion .   Run: docker run -p 8000:8000 --env-file .env ai-dev-companion

FROM python:3.12-slim AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir 'uv==0.13.9'
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY bot ./bot
COPY reviewer ./reviewer
RUN uv sync --frozen --no-dev --no-editable

FROM python:3.12-slim AS runtime
RUN useradd --create-home --uid 10001 companion
WORKDIR /app
COPY --from=build --chown=companion:companion /app/.venv /app/.venv
ENV PATH="/app/.venv/bin:$PATH" PYTHONUNBUFFERED=1 LOG_FORMAT=json QUEUE_URL=sqlite:////app/data/jobs.sqlite3
RUN mkdir -p /app/data && chown companion:companion /app/data
USER companion
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
CMD ["python", "-m", "bot", "serve", "--host", "0.0.0.0"]
