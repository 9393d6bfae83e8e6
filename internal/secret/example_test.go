package secret_test

import (
	"fmt"
	"log"
	"os"

	"github.com/cleanroom-go/cleanroom/internal/secret"
)

// A suite's password is the same every time this user asks for it, and
// differs between suites.
func ExampleSuite() {
	// The per-user secret lives in the user's cache directory; here, a
	// scratch one.
	cache, err := os.MkdirTemp("", "secret-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(cache)
	defer os.Setenv("XDG_CACHE_HOME", os.Getenv("XDG_CACHE_HOME"))
	os.Setenv("XDG_CACHE_HOME", cache)

	shop, derived := secret.Suite("shop-3f2a9c")
	again, _ := secret.Suite("shop-3f2a9c")
	other, _ := secret.Suite("billing-77d0e1")
	fmt.Println(derived, len(shop), shop == again, shop == other)
	// Output: true 32 true false
}
