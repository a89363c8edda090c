#!/bin/sh
# Second database (Prefect) next to the MLflow one; runs once, on an empty data volume.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -c "CREATE DATABASE \"$PREFECT_DB\" OWNER \"$POSTGRES_USER\";"
