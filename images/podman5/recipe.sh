# Recipe for localhost/cleanroom/podman5, read by scripts/build-images.sh:
# Podman 5.4 from Debian trixie (Fedora and RHEL ship Podman 5), with crun,
# netavark, pasta and conmon, to run as a --privileged container on the
# host's Podman ("Podman in Podman"): its entrypoint starts a rootful API
# service and a rootless one (user cleanroom-p5, pasta networking), both
# with crun as on Fedora and RHEL, and a third, rootful with runc, whose
# sockets the host reaches through a bind mount. scripts/setup-podman5.sh
# builds it (it is not part of `make images`) and runs it.
IMAGE=localhost/cleanroom/podman5:5.4
SUITE=trixie
OPTIONAL=1 # built only when named: scripts/build-images.sh podman5
INCLUDE=podman,crun,runc,conmon,netavark,aardvark-dns,passt,catatonit,fuse-overlayfs,nftables,iptables,uidmap,ca-certificates,golang-github-containers-common,containers-storage,procps,iproute2,mawk,docker-registry,util-linux
EXCLUDE=()
# The rootless engine's user; its home is made on the storage bind mount at
# start (rootless overlay cannot sit on the outer container's overlay).
USERS=(cleanroom-p5:2000:/var/lib/containers/home/cleanroom-p5)
CHANGES=(
	'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
	'ENV LANG=C.UTF-8'
	'ENV container=podman'
	'ENV PODMAN_IGNORE_CGROUPSV1_WARNING=1'
	'ENTRYPOINT ["/usr/bin/catatonit", "--", "/usr/local/bin/podman5-engines"]'
)

customize() {
	local r=$1
	echo 'cleanroom-p5:100000:65536' >"$r/etc/subuid"
	echo 'cleanroom-p5:100000:65536' >"$r/etc/subgid"
	# Engine settings of both engines (the rootless one reads them too).
	install -d "$r/etc/containers/containers.conf.d"
	cat >"$r/etc/containers/containers.conf.d/50-cleanroom.conf" <<'CONF'
# crun, as on Fedora and RHEL; cgroupfs and file events: no systemd inside.
[engine]
runtime = "crun"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_max_size = "64m"
[network]
# The host's Podman uses 10.88.0.0/16.
default_subnet = "10.89.0.0/24"
CONF
	# The test registry (a read-only copy of the host's, see the entrypoint)
	# speaks plain HTTP.
	install -d "$r/etc/containers/registries.conf.d"
	cat >"$r/etc/containers/registries.conf.d/50-cleanroom-test-registry.conf" <<'CONF'
[[registry]]
location = "127.0.0.1:5000"
insecure = true
CONF
	rm -f "$r/etc/docker/registry/config.yml"
}
