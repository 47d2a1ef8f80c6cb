#!/usr/bin/env bash
# Make sure the services the demo and the tests need are up: PostgreSQL, Redis, OpenSSH's
# sshd binary (the tests start their own sshd) and chromium (the console's browser tests).
# Starts what is installed but stopped; names the package to install for what is missing.
set -u
die() { echo "services: $*" >&2; exit 1; }

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "services: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start \
      || die "PostgreSQL failed to start"
    for _ in $(seq 1 60); do pg_up && break; sleep 0.5; done
    pg_up || die "PostgreSQL did not come up on 127.0.0.1:5432"
  else
    die "PostgreSQL is not running and not installed: apt-get install postgresql"
  fi
fi

if ! redis_up; then
  if command -v redis-server >/dev/null; then
    echo "services: starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log || die "Redis failed to start"
    for _ in $(seq 1 40); do redis_up && break; sleep 0.25; done
    redis_up || die "Redis did not come up on 127.0.0.1:6379"
  else
    die "Redis is not running and not installed: apt-get install redis-server"
  fi
fi

if [ ! -x /usr/sbin/sshd ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "services: installing openssh-server (the SFTP export of tests and demo)"
    (apt-get update -qq && apt-get install -y -qq openssh-server) >/dev/null 2>&1 \
      || die "could not install openssh-server"
  else
    die "OpenSSH server missing: apt-get install openssh-server"
  fi
fi
# The console's browser tests drive Debian's chromium through Playwright (Playwright's own
# browser download is not reachable from CI).
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "services: installing chromium (the console's browser tests)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
      >/dev/null 2>&1 || die "could not install chromium"
  else
    die "chromium missing (the console's browser tests): apt-get install chromium"
  fi
fi
echo "services: PostgreSQL, Redis, sshd and chromium ready"
