package labels

import (
	"runtime/debug"
	"testing"
)

func TestVersionIn(t *testing.T) {
	for _, tc := range []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"a user's test binary", debug.BuildInfo{Main: debug.Module{Path: "example.com/shop"},
			Deps: []*debug.Module{{Path: "github.com/jackc/pgx/v5", Version: "v5.8.0"}, {Path: Module, Version: "v0.4.1"}}}, "v0.4.1"},
		{"replaced by a fork", debug.BuildInfo{Main: debug.Module{Path: "example.com/shop"},
			Deps: []*debug.Module{{Path: Module, Version: "v0.4.1", Replace: &debug.Module{Path: "example.com/fork", Version: "v0.4.2-fix"}}}}, "v0.4.2-fix"},
		{"replaced by a directory", debug.BuildInfo{Main: debug.Module{Path: "example.com/shop"},
			Deps: []*debug.Module{{Path: Module, Version: "v0.4.1", Replace: &debug.Module{Path: "../cleanroom"}}}}, "devel"},
		{"go install @version", debug.BuildInfo{Main: debug.Module{Path: Module, Version: "v0.5.0"}}, "v0.5.0"},
		{"a checkout", debug.BuildInfo{Main: debug.Module{Path: Module, Version: "(devel)"}}, "devel"},
	} {
		if got := versionIn(&tc.bi); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := LibraryVersion(); got != "devel" {
		t.Errorf("in this repository's own tests LibraryVersion() = %q, want devel", got)
	}
}
