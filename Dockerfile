# One image for the cluster watcher and for running the api as a container (Cloud Run or `docker run`).
#
#   api, cloud mode (default; STORE_KIND=firestore BUS_KIND=pubsub ...):
#     docker run -p 8080:8080 -e GOOGLE_CLOUD_PROJECT=... IMAGE
#   all-in-one embedded mode (SQLite + in-process bus + local backend):
#     docker run -p 8080:8080 -v training-data:/data IMAGE python -m functions.embedded
#   cluster watcher (infra/k8s/watcher.yaml):
#     python -m functions.watcher
#
# The trainer image is trainer/Dockerfile. Build from the repository root:
#   docker build -t training-platform .

# --- dependencies, resolved from pyproject.toml's [project] dependencies ----------------------------------
FROM python:3.11.11-slim-bookworm AS deps

WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; d = tomllib.load(open('pyproject.toml', 'rb')); open('requirements.txt', 'w').write('\n'.join(d['project']['dependencies']) + '\n')" \
 && pip install --no-cache-dir --prefix=/install -r requirements.txt

# --- runtime -------------------------------------------------------------------------------------------------
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PORT=8080 \
    DATA_DIR=/data

RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app \
 && mkdir -p /data \
 && chown app:app /data

COPY --from=deps /install /usr/local

WORKDIR /app
COPY --chown=app:app functions/ functions/
COPY --chown=app:app shared/ shared/
COPY --chown=app:app trainer/ trainer/

USER 10001:10001
EXPOSE 8080
VOLUME ["/data"]

# Shell form so $PORT (set by Cloud Run) is expanded; exec keeps the server as PID 1 for signals.
CMD ["sh", "-c", "exec functions-framework --source=functions/main.py --target=api --port=${PORT}"]
