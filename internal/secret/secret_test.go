package secret

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// The per-user secret file is never read half-written: a file that is too
// short is an error (the suite then uses a random password, labelled on its
// pod), and processes making it at once all get the one that won.
func TestSecretFileIsWholeOrAbsent(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, nil, 0o600); err != nil { // a writer that died
		t.Fatal(err)
	}
	if b, err := readOrMakeSecret(short); err == nil {
		t.Errorf("an empty secret file gave a %d-byte secret and no error", len(b))
	}

	path := filepath.Join(dir, "fresh", "secret")
	var wg sync.WaitGroup
	got := make([][]byte, 20)
	errs := make([]error, 20)
	for i := range got {
		wg.Add(1)
		go func() { defer wg.Done(); got[i], errs[i] = readOrMakeSecret(path) }()
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil || len(got[i]) != 32 || string(got[i]) != string(got[0]) {
			t.Errorf("caller %d: %d bytes, %v; want the same 32 bytes as caller 0", i, len(got[i]), errs[i])
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("secret file: %v, mode %v", err, fi.Mode().Perm())
	}
}
