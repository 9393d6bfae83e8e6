// Package secret derives the password of a suite's services from a
// per-user secret, so that every process of the user (and the cleanroom
// command) works it out again and it need not be written where a lookup
// can reach it.
package secret

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// Suite is the services' password of a suite: random, and the same
// in every process and run on this machine (HMAC of the suite key with a
// per-user secret kept in the user's cache directory), so that a snapshot,
// whose data holds the password, fits the next run. Where no cache
// directory is writable it is random per process (snapshots then do not
// carry over).
//
// derived says whether it came from the per-user secret: then any process
// of this user works it out again, and it need not be written anywhere a
// lookup can reach (a pod label, an image's config).
func Suite(suite string) (secret string, derived bool) {
	key, err := machineSecret()
	if err != nil {
		return randomHex(), false
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("cleanroom suite password\x00" + suite))
	return hex.EncodeToString(m.Sum(nil))[:32], true
}

var machineSecretOnce = sync.OnceValues(func() ([]byte, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return nil, err
	}
	return readOrMakeSecret(filepath.Join(dir, "cleanroom", "secret"))
})

func machineSecret() ([]byte, error) { return machineSecretOnce() }

// readOrMakeSecret reads the secret at path, making it first when there is
// none. The file appears whole or not at all: it is written under another
// name and linked into place, and of two processes making it at once the
// one whose link fails reads the other's.
func readOrMakeSecret(path string) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil && len(b) >= 32 {
		return b, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".secret.*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err := os.Link(f.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			b, err := os.ReadFile(path)
			if err == nil && len(b) < 32 {
				err = fmt.Errorf("the secret file %s is too short; remove it", path)
			}
			return b, err
		}
		return nil, err
	}
	return b, nil
}

func randomHex() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}
