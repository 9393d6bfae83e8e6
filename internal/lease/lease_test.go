package lease

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// One suite tested against two engines (a rootful and a rootless one, say)
// keeps two sets of leases: the reaper of one never judges the other's pod.
func TestLeasesArePerEngine(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	dir := func(uri string) string {
		t.Helper()
		d, err := EngineDir(uri)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	rootful := dir("unix:///run/podman/podman.sock")
	if rootless := dir("unix:///run/user/1000/podman/podman.sock"); rootless == rootful {
		t.Errorf("two engines share the lease directory %s", rootful)
	}
	for _, same := range []string{"unix:/run/podman/podman.sock", "unix:///run/podman//podman.sock"} {
		if d := dir(same); d != rootful {
			t.Errorf("%s: lease directory %s, want %s (the same socket)", same, d, rootful)
		}
	}
	if fi, err := os.Stat(rootful); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("lease directory %s: %v, mode %v; want 0700", rootful, err, fi.Mode().Perm())
	}
}

// The lease directory is refused when another user could have made it or
// can reach into it: a symbolic link, a wrong mode, another owner.
func TestLeaseDirectoryIsRefusedUnlessPrivate(t *testing.T) {
	base := t.TempDir()
	link := filepath.Join(base, "link")
	if err := os.Symlink(t.TempDir(), link); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]string{
		link: "is a symbolic link",
		open: "has mode 0777, want 0700",
		file: "is not a directory",
	} {
		if err := PrivateDir(dir); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("PrivateDir(%s): %v, want %q", dir, err, want)
		}
	}
	fresh := filepath.Join(base, "fresh")
	if err := PrivateDir(fresh); err != nil {
		t.Errorf("a new directory: %v", err)
	}
	if err := PrivateDir(fresh); err != nil {
		t.Errorf("the same directory again: %v", err)
	}
	if os.Getuid() == 0 {
		other := filepath.Join(base, "other")
		if err := os.Mkdir(other, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(other, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if err := PrivateDir(other); err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") {
			t.Errorf("privateDir of another user's directory: %v", err)
		}
	}
}
