#!/bin/sh
# Chooses the role: api (HTTP) or worker (queue consumer); anything else runs as a command.
set -e
case "$1" in
  api) exec node dist/apps/api/src/main.js ;;
  worker) exec node dist/apps/worker/src/main.js ;;
  *) exec "$@" ;;
esac
