# syntax=docker/dockerfile:1
# One image for every role: migrate, worker, beat, flower, and the sandbox services.
# The role is chosen by the command (see docker-compose.yml); the default is a worker.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# openssh-server is needed only by the sandbox SFTP service (`mlc sandbox sftp` runs sshd);
# production roles never start it. /run/sshd is the privilege-separation directory sshd
# insists on even when it runs unprivileged.
RUN apt-get update \
    && apt-get install -y --no-install-recommends openssh-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /run/sshd

RUN groupadd --system mlc \
    && useradd --system --gid mlc --create-home --home-dir /home/mlc \
       --shell /usr/sbin/nologin mlc \
    && install -d -o mlc -g mlc /var/lib/mlc /var/lib/flower /srv/export

# The source stays at /app and is installed in editable mode: pipeline/migrate.py finds the
# SQL files at Path(pipeline.__file__).parent.parent / "migrations", i.e. /app/migrations.
# A regular install would put pipeline/ in site-packages, away from migrations/.
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir -e ".[flower]"

# The code stays root-owned, read-only to the service; it writes only to /var/lib/mlc (beat
# schedule), /srv/export (sandbox SFTP) and its home. Named volumes inherit that ownership.
USER mlc

# Exec form (no shell in between): the SIGTERM of `docker stop` reaches celery, which does a
# warm shutdown and finishes its acks_late tasks within the stop grace period.
CMD ["celery", "-A", "workers", "worker", "--loglevel=INFO"]
