package isolate

import (
	"context"
	"strings"
	"testing"
)

func TestSpareCountFromTheEnvironment(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  int
		err   string
	}{
		{"", DefaultSpares, ""},
		{"0", 0, ""},
		{"12", 12, ""},
		{"-1", 0, `CLEANROOM_SPARE_DATABASES="-1": want a number of spare databases from 0 (none) to 64`},
		{"many", 0, `CLEANROOM_SPARE_DATABASES="many"`},
		{"65", 0, "from 0 (none) to 64"},
	} {
		t.Setenv("CLEANROOM_SPARE_DATABASES", tc.value)
		n, err := spareCount()
		switch {
		case tc.err == "" && (err != nil || n != tc.want):
			t.Errorf("%q: %d, %v; want %d", tc.value, n, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: %v; want an error saying %q", tc.value, err, tc.err)
		}
	}
	// Open refuses before it dials.
	t.Setenv("CLEANROOM_SPARE_DATABASES", "lots")
	if _, err := Open(context.Background(), "postgres://u:p@127.0.0.1:1/db"); err == nil || !strings.Contains(err.Error(), "CLEANROOM_SPARE_DATABASES") {
		t.Errorf("Open with a bad CLEANROOM_SPARE_DATABASES: %v", err)
	}
}
