#!/usr/bin/env bash
# setup-podman.sh — make this machine ready for Cleanroom's tests.
#
# Idempotent and quiet: it prints one line per thing it changed and nothing
# when everything is already in place. Safe (and fast) to run before every
# test run; `make setup` and `make test` do.
#
# As root (CI runners, our VMs) it:
#   - installs Podman and what it needs from the distribution's packages,
#   - adapts the engine only where this host needs it (runc on a cgroup v1 or
#     hybrid host, where crun fails; default container ulimits within this
#     process's hard limits, where Podman's defaults would fail setrlimit;
#     cgroupfs and file events where systemd is not running),
#   - starts the rootful API service when nothing answers on its socket,
#   - proves the engine works by running a trial container through the API.
# As any other user it installs nothing: it checks the rootless API socket and
# says exactly what to run when none answers.
#
# With --rootless-user NAME (as root), it also prepares NAME to run the tests
# against NAME's own rootless Podman service: creates the user, subordinate
# ids, /dev/net/tun access, XDG_RUNTIME_DIR, overlay storage, runc and
# cgroupfs, starts the user's API service and copies the local images into
# the user's store (make test runs the integration suite as that user).
#
# Environment:
#   CLEANROOM_PODMAN_SOCKET  rootful socket path (default /run/podman/podman.sock)
set -euo pipefail

rootless_user=""
while [ $# -gt 0 ]; do
	case $1 in
	--rootless-user) rootless_user=${2:?--rootless-user needs a user name}; shift 2 ;;
	*) echo "usage: $0 [--rootless-user NAME]" >&2; exit 2 ;;
	esac
done

say() { printf 'setup-podman: %s\n' "$*"; }
join() { local sep=$1 out=$2; shift 2; for x in "$@"; do out+=$sep$x; done; printf '%s' "$out"; }
die() { printf 'setup-podman: error: %s\n' "$*" >&2; exit 1; }

# ping SOCKET: true when a Podman API service answers on the unix socket.
ping_socket() {
	[ -S "$1" ] || return 1
	[ "$(curl -s --max-time 3 --unix-socket "$1" http://d/_ping 2>/dev/null)" = OK ]
}

# ---------------------------------------------------------------- rootless --
if [ "$(id -u)" -ne 0 ]; then
	command -v podman >/dev/null ||
		die "podman is not installed; install it as root: sudo apt-get install podman (Debian/Ubuntu) or sudo dnf install podman (Fedora/RHEL)"
	command -v curl >/dev/null || die "curl is not installed; install it: sudo apt-get install curl"
	if [ -n "${CONTAINER_HOST:-}" ]; then
		exit 0 # the user chose an engine explicitly; the library reports if it does not answer
	fi
	runtime_dir=${XDG_RUNTIME_DIR:-/run/user/$(id -u)}
	sock=$runtime_dir/podman/podman.sock
	ping_socket "$sock" && exit 0
	if command -v systemctl >/dev/null && systemctl --user show-environment >/dev/null 2>&1; then
		die "no rootless Podman service answers at $sock; start it with: systemctl --user enable --now podman.socket"
	fi
	die "no rootless Podman service answers at $sock; start it with: systemctl --user enable --now podman.socket
  (without a systemd user session: mkdir -p $runtime_dir/podman && podman system service --time=0 unix://$sock &)"
fi

# -------------------------------------------------------------------- root --
sock=${CLEANROOM_PODMAN_SOCKET:-/run/podman/podman.sock}
log_dir=/var/log/cleanroom
changed_conf=0

# 1. Packages. runc: see the cgroup note below; catatonit: Podman 4 builds its
# pause image from it without a registry; busybox-static: the trial image.
need=()
for pair in podman:podman runc:runc curl:curl catatonit:/usr/libexec/podman/catatonit busybox-static:/bin/busybox uidmap:newuidmap slirp4netns:slirp4netns; do
	pkg=${pair%%:*} probe=${pair#*:}
	case $probe in
	/*) [ -e "$probe" ] || need+=("$pkg") ;;
	*) command -v "$probe" >/dev/null || need+=("$pkg") ;;
	esac
done
if [ ${#need[@]} -gt 0 ]; then
	command -v apt-get >/dev/null ||
		die "missing ${need[*]} and this is not a Debian/Ubuntu machine; install them with the distribution's package manager"
	export DEBIAN_FRONTEND=noninteractive
	apt_log=$(mktemp)
	apt-get update -qq >"$apt_log" 2>&1 || die "apt-get update failed:
$(tail -n 20 "$apt_log")"
	apt-get install -y -qq --no-install-recommends "${need[@]}" >"$apt_log" 2>&1 ||
		die "apt-get install ${need[*]} failed:
$(tail -n 20 "$apt_log")"
	rm -f "$apt_log"
	say "installed ${need[*]}"
fi

# 2. The API service on the rootful socket.
service_pid() { pgrep -o -f "podman system service .*unix://$sock" || true; }
start_service() {
	if [ -d /run/systemd/system ] && [ "$sock" = /run/podman/podman.sock ]; then
		systemctl enable --now podman.socket >/dev/null 2>&1 ||
			die "systemctl enable --now podman.socket failed; see: journalctl -u podman.socket"
		say "enabled and started podman.socket (systemd)"
	else
		rm -f "$sock"
		mkdir -p "$(dirname "$sock")" "$log_dir"
		nohup setsid podman system service --time=0 "unix://$sock" \
			</dev/null >>"$log_dir/podman-service.log" 2>&1 &
		say "started the Podman API service on unix://$sock (log: $log_dir/podman-service.log)"
	fi
	for _ in $(seq 1 100); do
		ping_socket "$sock" && return 0
		sleep 0.1
	done
	die "the Podman API service did not answer on $sock within 10 s; see $log_dir/podman-service.log"
}
stop_service() {
	if [ -d /run/systemd/system ] && systemctl is-active --quiet podman.socket 2>/dev/null; then
		systemctl stop podman.service podman.socket 2>/dev/null || true
	else
		pid=$(service_pid)
		[ -n "$pid" ] && kill "$pid" 2>/dev/null
		for _ in $(seq 1 50); do [ -z "$(service_pid)" ] && break; sleep 0.1; done
	fi
}
ping_socket "$sock" || start_service

# 3. Engine configuration, only what this host needs.
conf_dir=/etc/containers/containers.conf.d
conf=$conf_dir/50-cleanroom.conf
engine=() containers=() why=()
if [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]; then
	# cgroup v1 or hybrid: Debian 12's crun fails here ("cgroups in hybrid mode
	# not supported"); runc handles both.
	engine+=('runtime = "runc"')
	why+=("runc: cgroup v1/hybrid host")
fi
if [ ! -d /run/systemd/system ]; then
	# Without systemd as init, the systemd cgroup manager and journald events
	# are unavailable.
	# The file event log is cut at 1 MB by default: a busy test run loses
	# events that the tests and the benchmark read back.
	engine+=('cgroup_manager = "cgroupfs"' 'events_logger = "file"' 'events_logfile_max_size = "64m"')
	why+=("cgroupfs and file events: no systemd")
fi
# Rootful Podman 4 sets RLIMIT_NOFILE and RLIMIT_NPROC to 1048576 in every
# container; without CAP_SYS_RESOURCE that fails where the engine's own hard
# limits are lower. Podman lowers its own RLIMIT_NPROC at start, so read the
# limits of the running service, not of this shell.
podman_default=1048576
limits=/proc/self/limits
pid=$(service_pid)
[ -n "$pid" ] && [ -r "/proc/$pid/limits" ] && limits=/proc/$pid/limits
hard() { awk -v k="$1" 'index($0, k) == 1 { print $(NF-1) }' "$limits"; }
ulimits=()
hn=$(hard "Max open files")
if [ "$hn" != unlimited ] && [ "$hn" -lt $podman_default ]; then
	ulimits+=("\"nofile=$hn:$hn\"")
fi
hu=$(hard "Max processes")
if [ "$hu" != unlimited ] && [ "$hu" -lt $podman_default ]; then
	# Leave headroom below the hard value: runc sets the limit while the
	# engine's own processes already count against it.
	np=$((hu / 2))
	ulimits+=("\"nproc=$np:$np\"")
fi
if [ ${#ulimits[@]} -gt 0 ]; then
	containers+=("default_ulimits = [$(IFS=,; echo "${ulimits[*]}")]")
	why+=("ulimits within the engine's hard limits nofile=$hn nproc=$hu")
fi
want=""
if [ ${#engine[@]} -gt 0 ] || [ ${#containers[@]} -gt 0 ]; then
	want="# Written by cleanroom scripts/setup-podman.sh for this host; safe to delete.
# $(join "; " "${why[@]}")
"
	if [ ${#containers[@]} -gt 0 ]; then
		want+="[containers]
$(printf '%s\n' "${containers[@]}")
"
	fi
	if [ ${#engine[@]} -gt 0 ]; then
		want+="[engine]
$(printf '%s\n' "${engine[@]}")
"
	fi
fi
have=""
[ -f "$conf" ] && have=$(cat "$conf")$'\n'
if [ -n "$want" ] && [ "$have" != "$want" ]; then
	mkdir -p "$conf_dir"
	printf '%s' "$want" >"$conf"
	say "wrote $conf ($(join "; " "${why[@]}"))"
	changed_conf=1
elif [ -z "$want" ] && [ -f "$conf" ]; then
	rm -f "$conf"
	say "removed $conf (this host needs no adaptation)"
	changed_conf=1
fi
if [ $changed_conf = 1 ]; then
	stop_service
	say "restarting the Podman API service to apply the new configuration"
	start_service
fi

# 4. A trial container through the API proves engine, runtime and ulimits.
trial=localhost/cleanroom/busybox:latest
remote=(podman --url "unix://$sock")
if ! "${remote[@]}" image exists "$trial" 2>/dev/null; then
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	mkdir -p "$tmp/root/bin"
	cp /bin/busybox "$tmp/root/bin/busybox"
	for applet in sh true echo sleep cat nc; do ln -s busybox "$tmp/root/bin/$applet"; done
	tar -C "$tmp/root" -cf "$tmp/busybox.tar" .
	"${remote[@]}" import --quiet --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' \
		--change 'LABEL io.cleanroom.image=busybox' "$tmp/busybox.tar" "$trial" >/dev/null ||
		die "podman import of the trial image failed"
	say "built the trial image $trial from /bin/busybox"
fi
if ! out=$("${remote[@]}" run --rm --pull=never "$trial" echo cleanroom-trial-ok 2>&1) ||
	[ "$out" != cleanroom-trial-ok ]; then
	die "the trial container failed: $out
  check: podman info; the OCI runtime (runc on cgroup v1 hosts); $conf; $log_dir/podman-service.log"
fi

# 5. A rootless test user, when asked for.
[ -n "$rootless_user" ] || exit 0
u=$rootless_user
if ! id "$u" >/dev/null 2>&1; then
	useradd --create-home --shell /bin/bash "$u"
	say "created user $u for the rootless test run"
fi
uid=$(id -u "$u")
home=$(getent passwd "$u" | cut -d: -f6)
for f in /etc/subuid /etc/subgid; do
	if ! grep -q "^$u:" "$f" 2>/dev/null; then
		# The first free range above the ones already given out.
		start=$(awk -F: 'BEGIN { m = 100000 } { e = $2 + $3; if (e > m) m = e } END { print m }' "$f" 2>/dev/null || echo 100000)
		echo "$u:$start:65536" >>"$f"
		say "gave $u subordinate ids $start-$((start + 65535)) in $f"
	fi
done
if [ -e /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
	chmod 0666 /dev/net/tun
	say "made /dev/net/tun usable by rootless networking (slirp4netns)"
fi
run_dir=/run/user/$uid
if [ ! -d "$run_dir/podman" ]; then
	install -d -o "$u" -g "$(id -g "$u")" -m 0700 "$run_dir" "$run_dir/podman"
	say "created XDG_RUNTIME_DIR $run_dir for $u"
fi
# The user's own environment, nothing of root's: a rootless engine reads
# its configuration from it.
as_user() {
	(cd "$home" && runuser -u "$u" -- env -i HOME="$home" USER="$u" LOGNAME="$u" XDG_RUNTIME_DIR="$run_dir" \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@")
}
conf_home=$home/.config/containers
# runroot and graphroot spelled out (they are Podman's rootless defaults):
# with a storage.conf that names only the driver, the rootless API service
# of Podman 4.3 was seen failing commits with "runroot must be set" in the
# middle of a test run.
want_storage="[storage]
driver = \"overlay\"
runroot = \"$run_dir/containers\"
graphroot = \"$home/.local/share/containers/storage\""
want_containers="[engine]
runtime = \"runc\"
cgroup_manager = \"cgroupfs\"
events_logger = \"file\"
events_logfile_max_size = \"64m\""
user_conf_changed=0
for pair in "storage.conf:want_storage" "containers.conf:want_containers"; do
	file=$conf_home/${pair%%:*}
	var=${pair#*:}
	if [ "$(cat "$file" 2>/dev/null)" != "${!var}" ]; then
		as_user mkdir -p "$conf_home"
		printf '%s\n' "${!var}" | as_user tee "$file" >/dev/null
		say "wrote $file"
		user_conf_changed=1
	fi
done
user_sock=$run_dir/podman/podman.sock
if [ $user_conf_changed = 1 ]; then
	pkill -u "$u" -f "podman system service" 2>/dev/null || true
	sleep 0.5
fi
if ! ping_socket "$user_sock"; then
	rm -f "$user_sock"
	as_user setsid nohup podman system service --time=0 "unix://$user_sock" </dev/null >>"$log_dir/podman-service-$u.log" 2>&1 &
	for _ in $(seq 1 100); do
		ping_socket "$user_sock" && break
		sleep 0.1
	done
	ping_socket "$user_sock" || die "the rootless Podman service of $u did not answer; see $log_dir/podman-service-$u.log"
	say "started the rootless Podman API service of $u on unix://$user_sock"
fi
# The local images, copied into the user's store when they differ there.
for img in $(podman images --format '{{.Repository}}:{{.Tag}}' --filter reference='localhost/cleanroom/*' | grep '^localhost/cleanroom/' | grep -v '^localhost/cleanroom/podman5:'); do
	want=$(podman image inspect --format '{{.Id}}' "$img")
	have=$(as_user podman image inspect --format '{{.Id}}' "$img" 2>/dev/null || true)
	if [ "$want" != "$have" ]; then
		podman save -q "$img" | as_user podman load -q >/dev/null || die "copy $img into the store of $u failed"
		say "copied $img into the rootless store of $u"
	fi
done
if ! out=$(as_user podman --url "unix://$user_sock" run --rm --pull=never "$trial" echo cleanroom-trial-ok 2>&1) ||
	[ "$out" != cleanroom-trial-ok ]; then
	die "the rootless trial container of $u failed: $out"
fi
