package mariadb_test

import (
	"bufio"
	"fmt"
	"os"
	"testing"

	"github.com/cleanroom-go/cleanroom/internal/itest"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
)

// helperEnv makes the test binary a second test process of the suite
// that runs TestHelperWritesItsDatabase only.
const helperEnv = "CLEANROOM_MARIADB_TEST_HELPER"

// TestHelperWritesItsDatabase runs in the helper process only: a test
// that writes a row into a database of its own, says so on stdout, and
// runs until its stdin closes (or it is killed).
func TestHelperWritesItsDatabase(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("runs as the helper process of TestAnotherProcessSharesTheServer")
	}
	d := cleanroom.NewMariaDBDatabase(t, migrations)
	if _, err := d.DB().Exec("INSERT INTO customers (email) VALUES ('from-the-other-process@example.com')"); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("READY %s %s\n", cleanroom.MariaDBFor(t).Container().ID, d.Name)
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
}

// A second test process of the suite (as a second package's test binary
// is) uses the same MariaDB container: the database its test made, and the
// row it wrote, are on this process's server.
func TestAnotherProcessSharesTheServer(t *testing.T) {
	t.Parallel()
	srv := cleanroom.MariaDBFor(t)
	helper, f := itest.StartProcess(t, helperEnv, "TestHelperWritesItsDatabase")
	if len(f) != 2 {
		t.Fatalf("the helper process said READY %q", f)
	}
	id, db := f[0], f[1]
	if id != srv.Container().ID {
		t.Errorf("the helper process uses container %s, this one %s: not shared", id, srv.Container().ID)
	}
	var n int
	if err := admin(t).QueryRow("SELECT COUNT(*) FROM `" + db + "`.customers WHERE email = 'from-the-other-process@example.com'").Scan(&n); err != nil || n != 1 {
		t.Errorf("the helper's row in %s, read on this process's server: %d rows, %v; want 1", db, n, err)
	}
	helper.Kill()
}
