# Recipe for localhost/cleanroom/postgres:17, read by scripts/build-images.sh:
# the postgres recipe (its entrypoint and layout) with PostgreSQL 17 from
# Debian trixie. The isolation and snapshot tests run against it too.
PG_MAJOR=17
SUITE=trixie
BASE=postgres
OPTIONAL=1
# shellcheck source=../postgres/recipe.sh
. "$top/images/$BASE/recipe.sh"
