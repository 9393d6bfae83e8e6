# Recipe for localhost/cleanroom/postgres:13, read by scripts/build-images.sh:
# the postgres recipe (its entrypoint and layout) with PostgreSQL 13 from
# Debian bullseye, the oldest major Debian still serves: it has no CREATE
# DATABASE … STRATEGY, so the isolation tests run against it too.
PG_MAJOR=13
SUITE=bullseye
MERGED_USR=0 # the merged-usr hook of mmdebstrap fails on bullseye
BASE=postgres
OPTIONAL=1
# shellcheck source=../postgres/recipe.sh
. "$top/images/$BASE/recipe.sh"
