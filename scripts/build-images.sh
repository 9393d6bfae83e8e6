#!/usr/bin/env bash
# build-images.sh — build Cleanroom's local service images from Debian
# packages, for machines that reach no container registry.
#
#   scripts/build-images.sh            build what is missing or out of date
#   scripts/build-images.sh postgres   only that image (a directory of images/)
#
# A recipe with OPTIONAL=1 (the Podman 5 engine image, the other Postgres
# versions) is built only when named; the others make up the default set. A
# recipe with BASE=<name> builds on images/<name>: it sources that recipe
# and takes its rootfs/.
#   CLEANROOM_REBUILD=1 scripts/build-images.sh   rebuild regardless
#
# Each images/<name>/ holds recipe.sh (packages, image settings, a customize
# step) and rootfs/ (files copied into the image). mmdebstrap builds a minimal
# root file system, `podman import` turns it into an image. The sha256 of the
# recipe directory and of this script is kept as the image label
# io.cleanroom.recipe, so an image is rebuilt only when its recipe changed and
# a second run prints nothing. Needs root (mmdebstrap's root mode) and Podman.
#
# Environment:
#   CLEANROOM_DEBIAN_MIRROR  Debian mirror URL (default: mmdebstrap's, deb.debian.org
#                            with updates and security for a stable suite)
#   CLEANROOM_REBUILD=1      rebuild even when the recipe hash matches
set -euo pipefail

say() { printf 'build-images: %s\n' "$*"; }
die() { printf 'build-images: error: %s\n' "$*" >&2; exit 1; }

top=$(cd "$(dirname "$0")/.." && pwd)
self=$top/scripts/build-images.sh

command -v podman >/dev/null || die "podman is not installed; run scripts/setup-podman.sh first"

# recipe_hash DIR: content hash of the recipe directory (names, modes, bytes),
# of the recipe it builds on (BASE), and of this script.
recipe_hash() {
	local base
	base=$(. "$1/recipe.sh"; echo "${BASE:-}")
	(
		for d in "$1" ${base:+"$top/images/$base"}; do
			cd "$d"
			find . -type f -print0 | LC_ALL=C sort -z |
				xargs -0 -n1 sh -c 'printf "%s %s " "$0" "$(stat -c %a "$0")"; sha256sum <"$0"'
		done
		sha256sum <"$self"
	) | sha256sum | cut -c1-32
}

if [ "$(id -u)" -ne 0 ] && [ "${1:-}" != --customize ]; then
	# Rootless: nothing to do when this user's store has every image at its
	# recipe's hash; otherwise build in the rootful store (mmdebstrap needs
	# root) and copy each image into this user's store. The images: the
	# named ones, or the default set.
	recipes=()
	for recipe in "$top"/images/*/recipe.sh; do
		name=$(basename "$(dirname "$recipe")")
		if [ $# -gt 0 ]; then
			if [[ " $* " == *" $name "* ]]; then recipes+=("$recipe"); fi
		elif [ "$(. "$recipe"; echo "${OPTIONAL:-}")" != 1 ]; then
			recipes+=("$recipe")
		fi
	done
	current=1
	for recipe in "${recipes[@]}"; do
		img=$(. "$recipe"; echo "$IMAGE")
		have=$(podman image inspect --format '{{index .Labels "io.cleanroom.recipe"}}' "$img" 2>/dev/null || true)
		[ "$have" = "$(recipe_hash "$(dirname "$recipe")")" ] || current=0
	done
	[ $current = 1 ] && [ "${CLEANROOM_REBUILD:-}" != 1 ] && exit 0
	command -v sudo >/dev/null || die "building images needs root; run: su -c '$self'"
	sudo "$self" "$@"
	for recipe in "${recipes[@]}"; do
		img=$(. "$recipe"; echo "$IMAGE")
		want=$(sudo podman image inspect --format '{{.Id}}' "$img")
		have=$(podman image inspect --format '{{.Id}}' "$img" 2>/dev/null || true)
		if [ "$want" != "$have" ]; then
			sudo podman save -q "$img" | podman load -q >/dev/null || die "copying $img into the rootless store failed"
			say "copied $img into the rootless store of $(id -un)"
		fi
	done
	exit 0
fi

if ! command -v mmdebstrap >/dev/null || [ ! -e /usr/share/keyrings/debian-archive-keyring.gpg ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null 2>&1 || die "apt-get update failed (run it to see why)"
	apt-get install -y -qq --no-install-recommends mmdebstrap debian-archive-keyring >/dev/null 2>&1 ||
		die "apt-get install mmdebstrap debian-archive-keyring failed (run it to see why)"
	say "installed mmdebstrap debian-archive-keyring"
fi

build() {
	local dir=$1 name IMAGE SUITE INCLUDE EXCLUDE USERS CHANGES OPTIONAL="" BASE="" PG_MAJOR="" MERGED_USR=""
	name=$(basename "$dir")
	# shellcheck source=/dev/null
	. "$dir/recipe.sh"
	# A recipe that builds on another (BASE) takes its files too.
	local rootfs=$dir/rootfs
	[ -n "$BASE" ] && rootfs=$top/images/$BASE/rootfs
	local hash have
	hash=$(recipe_hash "$dir")
	have=$(podman image inspect --format '{{index .Labels "io.cleanroom.recipe"}}' "$IMAGE" 2>/dev/null || true)
	if [ "$have" = "$hash" ] && [ "${CLEANROOM_REBUILD:-}" != 1 ]; then
		return 0
	fi

	local tmp=$tmp_root/$name start
	start=$(date +%s)
	mkdir -p "$tmp"

	local opts=(
		--variant=essential
		--include="$INCLUDE"
		--aptopt='APT::Install-Recommends "false"'
		--skip=cleanup/run
		--quiet
	)
	# Merged /usr, as the official images have; not for a suite older than
	# bookworm (MERGED_USR=0: the hook fails on bullseye).
	[ "$MERGED_USR" = 0 ] || opts+=(--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr)
	local p
	for p in /usr/share/doc /usr/share/man /usr/share/info /usr/share/locale \
		/usr/share/lintian /usr/share/linda /usr/share/bug /usr/share/zoneinfo-icu; do
		opts+=(--dpkgopt="path-exclude=$p/*")
	done
	for p in "${EXCLUDE[@]}"; do
		opts+=(--dpkgopt="path-exclude=$p")
	done
	# Users with fixed ids, before the packages whose postinst would add them.
	local u user uid home
	for u in "${USERS[@]}"; do
		IFS=: read -r user uid home <<<"$u"
		opts+=(--essential-hook="echo '$user:x:$uid:$uid::$home:/bin/sh' >>\"\$1/etc/passwd\"; echo '$user:x:$uid:' >>\"\$1/etc/group\"")
	done
	opts+=(--customize-hook="cp -a '$rootfs/.' \"\$1/\"")
	opts+=(--customize-hook="'$self' --customize '$dir' \"\$1\"")
	# Not needed in a service image: package lists, caches, logs.
	opts+=(--customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/cache/debconf/*-old "$1"/var/log/*.log "$1"/var/log/apt')

	local mirror=()
	[ -n "${CLEANROOM_DEBIAN_MIRROR:-}" ] && mirror=("$CLEANROOM_DEBIAN_MIRROR")
	mmdebstrap "${opts[@]}" "$SUITE" "$tmp/rootfs.tar" "${mirror[@]}" >"$tmp/log" 2>&1 ||
		die "mmdebstrap for $name failed:
$(tail -n 30 "$tmp/log")"

	local changes=(--change "LABEL io.cleanroom.recipe=$hash" --change "LABEL io.cleanroom.image=$name")
	local c
	for c in "${CHANGES[@]}"; do changes+=(--change "$c"); done
	podman import --quiet "${changes[@]}" "$tmp/rootfs.tar" "$IMAGE" >/dev/null ||
		die "podman import of $IMAGE failed"
	podman image prune -f --filter "label=io.cleanroom.image=$name" >/dev/null 2>&1 || true
	local size
	size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
	say "built $IMAGE ($((size / 1000000)) MB, $(($(date +%s) - start)) s)"
}

# Internal: run a recipe's customize step inside mmdebstrap's hook.
if [ "${1:-}" = --customize ]; then
	# shellcheck source=/dev/null
	. "$2/recipe.sh"
	customize "$3"
	exit 0
fi

if [ $# -gt 0 ]; then
	dirs=()
	for n in "$@"; do
		[ -f "$top/images/$n/recipe.sh" ] || die "no image recipe images/$n/recipe.sh (have: $(cd "$top/images" && ls -d */ | tr -d / | tr '\n' ' '))"
		dirs+=("$top/images/$n")
	done
else
	dirs=()
	for d in "$top"/images/*/; do
		[ "$(. "$d/recipe.sh"; echo "${OPTIONAL:-}")" = 1 ] || dirs+=("$d")
	done
fi
tmp_root=$(mktemp -d /var/tmp/cleanroom-images.XXXXXX)
trap 'rm -rf "$tmp_root"' EXIT
for d in "${dirs[@]}"; do
	build "${d%/}"
done
