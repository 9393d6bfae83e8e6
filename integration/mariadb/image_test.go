package mariadb_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha1"
	"database/sql"
	"database/sql/driver"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/google/go-cmp/cmp"

	"github.com/cleanroom-go/cleanroom/internal/itest"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/healthcheck"
)

// contractImage is the image TestImageContract checks: the one the
// package's tests run (CLEANROOM_MARIADB_IMAGE, localhost/cleanroom/mariadb
// where no registry is reachable), else the official image, whose contract
// it is.
var contractImage = func() string {
	if v := os.Getenv("CLEANROOM_MARIADB_IMAGE"); v != "" {
		return v
	}
	return cleanroom.DefaultMariaDBImage
}()

// TestImageContract checks, on services started from the image as
// Generic ones, every promise of the official mariadb image's contract
// that images/mariadb (recipe.sh, the entrypoint's header) makes:
//
//   - MARIADB_ROOT_PASSWORD: root logs in with it from anywhere
//     (MARIADB_ROOT_HOST's default, %), and with nothing else;
//   - MARIADB_DATABASE, MARIADB_USER, MARIADB_PASSWORD: the user logs in and
//     holds every privilege on that database and none elsewhere (not even
//     on a database its name's "_" would match as a GRANT wildcard);
//   - the same through MYSQL_* aliases, *_FILE variants (values read from
//     files, root's as MYSQL_ROOT_PASSWORD_FILE from a file only root may
//     read) and
//     MARIADB_ROOT_PASSWORD_HASH / MARIADB_PASSWORD_HASH;
//   - MARIADB_ALLOW_EMPTY_ROOT_PASSWORD (MYSQL_ALLOW_EMPTY_PASSWORD),
//     MARIADB_RANDOM_ROOT_PASSWORD (logged as GENERATED ROOT PASSWORD),
//     MARIADB_ROOT_HOST=localhost (MYSQL_ROOT_HOST): root over the unix
//     socket only; without any root option the container refuses to start;
//   - MARIADB_INITDB_SKIP_TZINFO (MYSQL_ alias): no time-zone tables;
//     without it they are loaded;
//   - /docker-entrypoint-initdb.d: .sql, .sql.gz, .sql.xz, .sql.zst,
//     executable .sh (run) and
//     other .sh (sourced), in name order, .sql against MARIADB_DATABASE,
//     once: a restarted container starts on its data without running them
//     again;
//   - a command of flags alone reaches mariadbd (--max-connections, --port);
//     --datadir on the command line or in a configuration file moves the
//     initialised data directory;
//   - port 3306 on every address (IPv6 too), reached through the pod's
//     published port; root's password hash set after the init scripts,
//     which log in as root before it; the server
//     runs as uid and gid 999 (started as root, which exec still is) and
//     owns its data directory, /var/lib/mysql, a VOLUME.
//
// The library mounts nothing into containers, so files the image should
// find at its first start are written by a shell given as entrypoint,
// which then execs the image's entrypoint with the command, as the image's
// ENTRYPOINT would run it (withFiles). Each service listens on a port of
// its own: the pod's containers share one network namespace.
func TestImageContract(t *testing.T) {
	ctx := context.Background()
	rootPW, appPW := "root-"+itest.RandomHex(6), "app-'\\\"-"+itest.RandomHex(6)
	hashRootPW, hashUserPW := "hash-root-"+itest.RandomHex(6), "hash-user-"+itest.RandomHex(6)
	fileRootPW, fileUserPW := "file-root-"+itest.RandomHex(6), "file-user-"+itest.RandomHex(6)
	aliasUserPW := "alias-user-" + itest.RandomHex(6)

	services := []cleanroom.Service{
		// The plain variables, init scripts, flags alone as the command,
		// port 3306, a restart.
		cleanroom.Generic("maria-main", contractImage, append(withFiles(initScripts(), "--max-connections=77"),
			cleanroom.WithPort(3306), cleanroom.WithReady(answers(3306)),
			cleanroom.WithEnv("MARIADB_ROOT_PASSWORD", rootPW),
			cleanroom.WithEnv("MARIADB_DATABASE", "app_db"),
			cleanroom.WithEnv("MARIADB_USER", "app"),
			cleanroom.WithEnv("MARIADB_PASSWORD", appPW),
			cleanroom.WithEnv("MARIADB_INITDB_SKIP_TZINFO", "1"))...),
		// Password hashes, with an init script (which runs as root before
		// root's hash is set); flags alone as the command, --datadir among
		// them (in a tmpfs, as the MariaDB service has it).
		cleanroom.Generic("maria-hash", contractImage, append(withFiles([]file{
			{"/docker-entrypoint-initdb.d/01-hash.sql", 0o644, []byte("CREATE TABLE made_by_init (x INT);\nINSERT INTO made_by_init VALUES (1);\n"), ""},
		}, "--port=3307", "--max-connections=78", "--datadir=/srv/mariadb/data"),
			cleanroom.WithPort(3307), cleanroom.WithReady(answers(3307)),
			cleanroom.WithTmpfs("/srv/mariadb", "rw,mode=1777"),
			cleanroom.WithEnv("MARIADB_ROOT_PASSWORD_HASH", nativePasswordHash(hashRootPW)),
			cleanroom.WithEnv("MARIADB_DATABASE", "hash_db"),
			cleanroom.WithEnv("MARIADB_USER", "hashed"),
			cleanroom.WithEnv("MARIADB_PASSWORD_HASH", nativePasswordHash(hashUserPW)),
			cleanroom.WithEnv("MARIADB_INITDB_SKIP_TZINFO", "1"))...),
		// *_FILE: secrets with a trailing newline, as Docker mounts them
		// (root's, mode 0444), and root's password in a file only root may
		// read (0400), which the entrypoint reads before it drops to
		// mysql, through its MYSQL_ alias; the data directory from a
		// configuration file.
		cleanroom.Generic("maria-files", contractImage, append(withFiles([]file{
			{"/run/secrets/root-password", 0o400, []byte(fileRootPW + "\n"), ""},
			{"/run/secrets/database", 0o444, []byte("file_db\n"), ""},
			{"/run/secrets/user", 0o444, []byte("filed\n"), ""},
			{"/run/secrets/password", 0o444, []byte(fileUserPW + "\n"), ""},
			{"/etc/mysql/mariadb.conf.d/60-contract.cnf", 0o644, []byte("[mariadbd]\ndatadir = /srv/from-config\n"), ""},
		}, "--port=3308"),
			cleanroom.WithPort(3308), cleanroom.WithReady(answers(3308)),
			cleanroom.WithEnv("MYSQL_ROOT_PASSWORD_FILE", "/run/secrets/root-password"),
			cleanroom.WithEnv("MARIADB_DATABASE_FILE", "/run/secrets/database"),
			cleanroom.WithEnv("MARIADB_USER_FILE", "/run/secrets/user"),
			cleanroom.WithEnv("MARIADB_PASSWORD_FILE", "/run/secrets/password"),
			cleanroom.WithEnv("MARIADB_INITDB_SKIP_TZINFO", "1"))...),
		// The database and user through MYSQL_ aliases; time zones loaded:
		// the one service without *_INITDB_SKIP_TZINFO.
		cleanroom.Generic("maria-empty", contractImage,
			cleanroom.WithPort(3310), cleanroom.WithReady(answers(3310)), cleanroom.WithCmd("--port=3310"),
			cleanroom.WithEnv("MARIADB_ALLOW_EMPTY_ROOT_PASSWORD", "1"),
			cleanroom.WithEnv("MYSQL_DATABASE", "alias_db"),
			cleanroom.WithEnv("MYSQL_USER", "aliased"),
			cleanroom.WithEnv("MYSQL_PASSWORD", aliasUserPW)),
		cleanroom.Generic("maria-random", contractImage,
			cleanroom.WithPort(3311), cleanroom.WithReady(answers(3311)), cleanroom.WithCmd("--port=3311"),
			cleanroom.WithEnv("MARIADB_RANDOM_ROOT_PASSWORD", "1"),
			cleanroom.WithEnv("MARIADB_ROOT_HOST", "localhost"),
			cleanroom.WithEnv("MARIADB_INITDB_SKIP_TZINFO", "1")),
		cleanroom.Generic("maria-alias-empty", contractImage,
			cleanroom.WithPort(3312), cleanroom.WithReady(answers(3312)), cleanroom.WithCmd("--port=3312"),
			cleanroom.WithEnv("MYSQL_ALLOW_EMPTY_PASSWORD", "yes"),
			cleanroom.WithEnv("MYSQL_ROOT_HOST", "localhost"),
			cleanroom.WithEnv("MYSQL_INITDB_SKIP_TZINFO", "1")),
		// No root option at all. (A tmpfs on the VOLUME: the anonymous
		// volume of a container that never became ready outlives it.)
		cleanroom.Generic("maria-no-root", contractImage,
			cleanroom.WithPort(3313), cleanroom.WithReady(answers(3313)), cleanroom.WithCmd("--port=3313"),
			cleanroom.WithTmpfs("/var/lib/mysql", "rw,mode=1777"),
			cleanroom.WithEnv("MARIADB_DATABASE", "nobody_db"),
			cleanroom.WithEnv("MARIADB_INITDB_SKIP_TZINFO", "1")),
	}
	env := contractEnv(t, services...)

	// Every service at once: each initialises its own data directory.
	started := map[string]*cleanroom.Container{}
	failed := map[string]error{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := env.Get(ctx, s.Name())
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed[s.Name()] = err
			} else {
				started[s.Name()] = c
			}
		}()
	}
	wg.Wait()
	get := func(t *testing.T, name string) *cleanroom.Container {
		t.Helper()
		c := started[name]
		if c == nil {
			t.Fatalf("%s did not start: %v", name, failed[name])
		}
		return c
	}

	t.Run("MARIADB_ROOT_PASSWORD, DATABASE, USER, PASSWORD; init scripts; flags; uid 999", func(t *testing.T) {
		c := get(t, "maria-main")
		addr := c.Addr(3306)
		root := login(t, addr, "root", rootPW, "")
		if who := currentUser(t, root); who != "root@%" {
			t.Errorf("root over TCP logs in as %s, want root@%% (MARIADB_ROOT_HOST's default)", who)
		}
		wantRefused(t, addr, "root", "wrong", "", 1045)
		wantRefused(t, addr, "root", "", "", 1045)
		checkUserOwnsDatabase(t, root, addr, "app", appPW, "app_db")
		checkVariables(t, root, map[string]string{"max_connections": "77", "port": "3306", "datadir": "/var/lib/mysql/"})
		checkTimeZones(t, root, false)
		checkInitScripts(t, root)
		checkServerOwnsData(t, c, "/var/lib/mysql")
		// Every address, IPv6 too, as the official image listens (where
		// the pod's loopback has ::1).
		if ipv6 := execIn(t, c, `grep -c '^00000000000000000000000000000001 ' /proc/net/if_inet6 || true`); ipv6 == "1" {
			out := execIn(t, c, `MYSQL_PWD="$1" mariadb -uroot -h ::1 --protocol=tcp -N -e 'SELECT 1' 2>&1 || true`, rootPW)
			if out != "1" {
				t.Errorf("root over TCP to [::1]:3306 in the container: %q, want 1 (the server listens on IPv4 only?)", out)
			}
		} else {
			t.Logf("the pod's loopback has no ::1: the IPv6 listener is not checked")
		}

		// A restart finds the data directory initialised: the server
		// starts on it, keeps what was written, runs no init script again.
		pc := itest.Podman(t)
		if err := pc.StopContainer(ctx, c.ID, 20*time.Second); err != nil {
			t.Fatalf("stop: %v", err)
		}
		if err := pc.StartContainer(ctx, c.ID); err != nil {
			t.Fatalf("start again: %v", err)
		}
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		probe := answers(3306)(c)
		err := healthcheck.Wait(wctx, healthcheck.Func(probe.String(), func(ctx context.Context) error {
			err := probe.Check(ctx)
			if info, ierr := pc.InspectContainer(ctx, c.ID); err != nil && ierr == nil && !info.State.Running {
				return healthcheck.Permanent(fmt.Errorf("the container stopped (exit code %d): %w", info.State.ExitCode, err))
			}
			return err
		}), healthcheck.Options{})
		if err != nil {
			lines, _ := c.Logs(ctx)
			t.Fatalf("after a restart: %v\nlast log lines:\n%s", err, strings.Join(lines[max(0, len(lines)-15):], "\n"))
		}
		root = login(t, addr, "root", rootPW, "app_db")
		checkInitScripts(t, root)
		var owned int
		if err := login(t, addr, "app", appPW, "app_db").QueryRow("SELECT COUNT(*) FROM owned").Scan(&owned); err != nil || owned != 1 {
			t.Errorf("the user's table after a restart: %d rows, %v; want the 1 written before", owned, err)
		}
	})

	t.Run("MARIADB_ROOT_PASSWORD_HASH, MARIADB_PASSWORD_HASH; --datadir as a flag", func(t *testing.T) {
		c := get(t, "maria-hash")
		addr := c.Addr(3307)
		root := login(t, addr, "root", hashRootPW, "")
		wantRefused(t, addr, "root", nativePasswordHash(hashRootPW), "", 1045)
		checkUserOwnsDatabase(t, root, addr, "hashed", hashUserPW, "hash_db")
		var x int
		if err := root.QueryRow("SELECT x FROM hash_db.made_by_init").Scan(&x); err != nil || x != 1 {
			t.Errorf("the init script's table in hash_db: %d, %v; want the row it wrote", x, err)
		}
		checkVariables(t, root, map[string]string{"max_connections": "78", "port": "3307", "datadir": "/srv/mariadb/data/"})
		checkServerOwnsData(t, c, "/srv/mariadb/data")
	})

	t.Run("*_FILE, MYSQL_ROOT_PASSWORD_FILE; datadir in a configuration file", func(t *testing.T) {
		c := get(t, "maria-files")
		addr := c.Addr(3308)
		root := login(t, addr, "root", fileRootPW, "")
		wantRefused(t, addr, "root", fileRootPW+"\n", "", 1045)
		checkUserOwnsDatabase(t, root, addr, "filed", fileUserPW, "file_db")
		checkVariables(t, root, map[string]string{"datadir": "/srv/from-config/"})
		checkServerOwnsData(t, c, "/srv/from-config")
	})

	t.Run("MARIADB_ALLOW_EMPTY_ROOT_PASSWORD; MYSQL_DATABASE, USER, PASSWORD; time zones loaded by default", func(t *testing.T) {
		c := get(t, "maria-empty")
		addr := c.Addr(3310)
		root := login(t, addr, "root", "", "")
		if who := currentUser(t, root); who != "root@%" {
			t.Errorf("root with the empty password logs in as %s, want root@%%", who)
		}
		checkUserOwnsDatabase(t, root, addr, "aliased", aliasUserPW, "alias_db")
		checkTimeZones(t, root, true)
	})

	t.Run("MARIADB_RANDOM_ROOT_PASSWORD, MARIADB_ROOT_HOST=localhost", func(t *testing.T) {
		c := get(t, "maria-random")
		lines, err := c.Logs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var pw string
		re := regexp.MustCompile(`GENERATED ROOT PASSWORD: (\S+)`)
		for _, l := range lines {
			if m := re.FindStringSubmatch(l); m != nil {
				pw = m[1]
			}
		}
		if pw == "" {
			t.Fatalf("no GENERATED ROOT PASSWORD in the log:\n%s", strings.Join(lines, "\n"))
		}
		// Root is root@localhost only: not over TCP, even with the password.
		wantRefused(t, c.Addr(3311), "root", pw, "", 1045, 1130)
		out := execIn(t, c, `MYSQL_PWD="$1" mariadb -uroot -N -e 'SELECT CURRENT_USER()' 2>&1; MYSQL_PWD= mariadb -uroot -N -e "SELECT 'the empty password works'" 2>&1 || true`, pw)
		if lines := strings.Split(out, "\n"); lines[0] != "root@localhost" || !strings.Contains(out, "ERROR 1045") {
			t.Errorf("root over the socket with the generated password, then with none:\n%s\nwant root@localhost, then ERROR 1045", out)
		}
	})

	t.Run("MYSQL_ALLOW_EMPTY_PASSWORD, MYSQL_ROOT_HOST=localhost, MYSQL_INITDB_SKIP_TZINFO", func(t *testing.T) {
		c := get(t, "maria-alias-empty")
		wantRefused(t, c.Addr(3312), "root", "", "", 1045, 1130)
		out := execIn(t, c, `mariadb -uroot -N -e 'SELECT CURRENT_USER(), (SELECT COUNT(*) FROM mysql.time_zone_name)' 2>&1`)
		if got := strings.Join(strings.Fields(out), " "); got != "root@localhost 0" {
			t.Errorf("root over the socket with the empty password, and the time zones loaded: %q, want root@localhost and none", out)
		}
	})

	t.Run("no root password option: refuses to start", func(t *testing.T) {
		err := failed["maria-no-root"]
		if err == nil {
			t.Fatal("a server without any root password option started")
		}
		for _, v := range []string{"MARIADB_ROOT_PASSWORD", "MARIADB_ROOT_PASSWORD_HASH", "MARIADB_ALLOW_EMPTY_ROOT_PASSWORD", "MARIADB_RANDOM_ROOT_PASSWORD"} {
			if !strings.Contains(err.Error(), v) {
				t.Errorf("the refusal does not name %s: %v", v, err)
			}
		}
	})
}

// file is a file withFiles writes into a container before its entrypoint
// runs.
type file struct {
	path string
	mode os.FileMode
	data []byte
	// compress, when set ("xz" or "zstd"), is the image's own program
	// that writes the file compressed from data.
	compress string
}

// withFiles runs the image's entrypoint with cmd after a shell has
// written files (as root, in the order given); the shell execs the
// entrypoint, so that the server is still PID 1.
func withFiles(files []file, cmd ...string) []cleanroom.Option {
	var b strings.Builder
	b.WriteString("set -e\n")
	for _, f := range files {
		dir := f.path[:strings.LastIndex(f.path, "/")]
		compress := ""
		if f.compress != "" {
			compress = " | " + f.compress + " -c"
		}
		fmt.Fprintf(&b, "mkdir -p '%s'\necho '%s' | base64 -d%s > '%s'\nchmod %o '%s'\n",
			dir, base64.StdEncoding.EncodeToString(f.data), compress, f.path, f.mode, f.path)
	}
	b.WriteString(`exec /usr/local/bin/docker-entrypoint.sh "$@"` + "\n")
	return []cleanroom.Option{cleanroom.WithEntrypoint("bash", "-c", b.String(), "bash"), cleanroom.WithCmd(cmd...)}
}

// initScripts are /docker-entrypoint-initdb.d files of every kind, each
// logging its run in the table initlog; written in the reverse of their
// names' order, which is the order they must run in.
func initScripts() []file {
	insert := func(step string) string {
		return fmt.Sprintf("INSERT INTO initlog (step, db) VALUES ('%s', DATABASE());\n", step)
	}
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write([]byte(insert("03-rows.sql.gz")))
	w.Close()
	client := `MYSQL_PWD="$MARIADB_ROOT_PASSWORD" mariadb -uroot "$MARIADB_DATABASE" -e "%s"` + "\n"
	const dir = "/docker-entrypoint-initdb.d/"
	files := []file{
		// No database named: MARIADB_DATABASE is the default one.
		{dir + "01-schema.sql", 0o644, []byte("CREATE TABLE initlog (n INT AUTO_INCREMENT PRIMARY KEY, step VARCHAR(40) NOT NULL, db VARCHAR(64));\n" + insert("01-schema.sql")), ""},
		{dir + "02-run.sh", 0o755, []byte("#!/bin/bash\nset -e\n" + fmt.Sprintf(client, insert("02-run.sh"))), ""},
		{dir + "03-rows.sql.gz", 0o644, gz.Bytes(), ""},
		// Not executable: sourced.
		{dir + "04-sourced.sh", 0o644, []byte(fmt.Sprintf(client, insert("04-sourced.sh"))), ""},
		{dir + "05-last.sql", 0o644, []byte(insert("05-last.sql")), ""},
		{dir + "06-rows.sql.xz", 0o644, []byte(insert("06-rows.sql.xz")), "xz"},
		{dir + "07-rows.sql.zst", 0o644, []byte(insert("07-rows.sql.zst")), "zstd"},
	}
	slices.Reverse(files)
	return files
}

// checkInitScripts checks that every init script ran once, in name order,
// the .sql ones against MARIADB_DATABASE.
func checkInitScripts(t *testing.T, root *sql.DB) {
	t.Helper()
	rows, err := root.Query("SELECT CONCAT(n, ' ', step, ' ', IFNULL(db, 'NULL')) FROM app_db.initlog ORDER BY n")
	if err != nil {
		t.Errorf("the init scripts' log: %v", err)
		return
	}
	var got []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{"1 01-schema.sql app_db", "2 02-run.sh app_db", "3 03-rows.sql.gz app_db", "4 04-sourced.sh app_db", "5 05-last.sql app_db", "6 06-rows.sql.xz app_db", "7 07-rows.sql.zst app_db"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("init scripts run (n, script, its default database) (-want +got):\n%s", diff)
	}
}

// checkUserOwnsDatabase checks MARIADB_USER's promise: user logs in over
// TCP with password (and with nothing else), holds every privilege on db
// and uses them, and has none on any other database, not even on one that
// db's "_" would match as a GRANT wildcard.
func checkUserOwnsDatabase(t *testing.T, root *sql.DB, addr, user, password, db string) {
	t.Helper()
	decoy := strings.ReplaceAll(db, "_", "x")
	for _, stmt := range []string{
		"CREATE DATABASE `" + decoy + "`",
		"CREATE TABLE `" + decoy + "`.t (x INT)",
		"CREATE DATABASE `" + db + "_other`",
	} {
		if _, err := root.Exec(stmt); err != nil {
			t.Fatalf("root: %s: %v", stmt, err)
		}
	}
	wantRefused(t, addr, user, password+"x", db, 1045)
	u := login(t, addr, user, password, db)

	var grants []string
	rows, err := u.Query("SHOW GRANTS")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var g string
		if err := rows.Scan(&g); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(g, "GRANT USAGE ON *.* TO `"+user+"`@`%`") {
			g = "GRANT USAGE ON *.* TO `" + user + "`@`%` …"
		}
		grants = append(grants, g)
	}
	want := []string{
		"GRANT USAGE ON *.* TO `" + user + "`@`%` …",
		"GRANT ALL PRIVILEGES ON `" + strings.ReplaceAll(db, "_", `\_`) + "`.* TO `" + user + "`@`%`",
	}
	if diff := cmp.Diff(want, grants); diff != "" {
		t.Errorf("%s's grants (-want +got):\n%s", user, diff)
	}

	for _, stmt := range []string{
		"CREATE TABLE owned (id INT PRIMARY KEY, note TEXT)",
		"INSERT INTO owned VALUES (1, 'mine')",
		"CREATE INDEX owned_note ON owned (note(10))",
		"CREATE VIEW owned_view AS SELECT id FROM owned",
		"CREATE PROCEDURE owned_proc() SELECT 1",
		"CREATE TRIGGER owned_trigger BEFORE UPDATE ON owned FOR EACH ROW SET NEW.note = NEW.note",
		"DROP VIEW owned_view",
	} {
		if _, err := u.Exec(stmt); err != nil {
			t.Errorf("%s on its database: %s: %v", user, stmt, err)
		}
	}
	var dbs []string
	rows, err = u.Query("SHOW DATABASES")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			t.Fatal(err)
		}
		dbs = append(dbs, d)
	}
	slices.Sort(dbs)
	if diff := cmp.Diff([]string{db, "information_schema"}, dbs); diff != "" {
		t.Errorf("databases %s sees (-want +got):\n%s", user, diff)
	}
	for stmt, code := range map[string]uint16{
		"SELECT * FROM `" + decoy + "`.t":           1142,
		"CREATE TABLE `" + db + "_other`.t (x INT)": 1142,
		"CREATE DATABASE `" + db + "_new`":          1044,
		"SELECT * FROM mysql.user":                  1142,
	} {
		_, err := u.Exec(stmt)
		if mysqlErrno(err) != code {
			t.Errorf("%s: %s: %v; want error %d", user, stmt, err, code)
		}
	}
	wantRefused(t, addr, user, password, decoy, 1044)
}

// checkVariables compares server variables with want.
func checkVariables(t *testing.T, db *sql.DB, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for name := range want {
		var v string
		if err := db.QueryRow("SELECT @@" + name).Scan(&v); err != nil {
			t.Fatalf("@@%s: %v", name, err)
		}
		got[name] = v
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("server variables (-want +got):\n%s", diff)
	}
}

// checkTimeZones checks whether the time-zone tables were loaded.
func checkTimeZones(t *testing.T, root *sql.DB, loaded bool) {
	t.Helper()
	var zones int
	var paris sql.NullString
	if err := root.QueryRow("SELECT (SELECT COUNT(*) FROM mysql.time_zone_name), CONVERT_TZ('2024-01-15 12:00:00', 'UTC', 'Europe/Paris')").Scan(&zones, &paris); err != nil {
		t.Fatal(err)
	}
	if loaded && (zones == 0 || paris.String != "2024-01-15 13:00:00") {
		t.Errorf("time zones without MARIADB_INITDB_SKIP_TZINFO: %d names, noon UTC in Paris %v; want them loaded", zones, paris)
	}
	if !loaded && (zones != 0 || paris.Valid) {
		t.Errorf("time zones with *_INITDB_SKIP_TZINFO: %d names, noon UTC in Paris %v; want none", zones, paris)
	}
}

// checkServerOwnsData checks, in the container, that exec runs as root
// (the image's user), the server is PID 1 running as uid and gid 999, the
// data directory datadir is initialised and wholly 999's, /var/lib/mysql
// is a mount (the image's VOLUME), and is left uninitialised when datadir
// is elsewhere.
func checkServerOwnsData(t *testing.T, c *cleanroom.Container, datadir string) {
	t.Helper()
	out := execIn(t, c, `
id -u
cat /proc/1/comm
grep -E '^(Uid|Gid):' /proc/1/status
stat -c '%u:%g' "$1"
test -d "$1/mysql" && echo "$1/mysql"
find "$1" \( \! -user 999 -o \! -group 999 \) -print | head -n 5
if [ "$1" != /var/lib/mysql ] && [ -e /var/lib/mysql/mysql ]; then echo '/var/lib/mysql initialised too'; fi
awk '$5 == "/var/lib/mysql" { print "volume at /var/lib/mysql" }' /proc/1/mountinfo`, datadir)
	var got []string
	for _, l := range strings.Split(out, "\n") {
		got = append(got, strings.Join(strings.Fields(l), " "))
	}
	want := []string{"0", "mariadbd", "Uid: 999 999 999 999", "Gid: 999 999 999 999", "999:999", datadir + "/mysql", "volume at /var/lib/mysql"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("exec's uid, PID 1 and its ids, owner of %s, its mysql directory, files not 999's (-want +got):\n%s", datadir, diff)
	}
}

// execIn runs script with sh in c, with args as $1…, and returns its
// output, trimmed.
func execIn(t *testing.T, c *cleanroom.Container, script string, args ...string) string {
	t.Helper()
	code, out, err := c.Exec(context.Background(), append([]string{"sh", "-c", script, "sh"}, args...))
	if err != nil || code != 0 {
		t.Fatalf("exec in %s: exit %d, %v:\n%s", c.Service, code, err, out)
	}
	return strings.TrimSpace(out)
}

// answers is ready once the server answers on port over TCP, with a login
// or a refusal: the entrypoint's temporary server listens on no port, so
// this is the real one.
func answers(port uint16) func(*cleanroom.Container) healthcheck.Probe {
	return func(c *cleanroom.Container) healthcheck.Probe {
		addr := c.Addr(port)
		return healthcheck.Func("mariadb answers at "+addr, func(ctx context.Context) error {
			db := sql.OpenDB(connector(addr, "probe", "", ""))
			defer db.Close()
			err := db.PingContext(ctx)
			if err == nil || mysqlErrno(err) != 0 {
				return nil
			}
			return err
		})
	}
}

// connector connects to addr as user, quietly (a server that is starting
// breaks many handshakes, which the driver would log).
func connector(addr, user, password, db string) driver.Connector {
	cfg := mysql.NewConfig()
	cfg.Net, cfg.Addr, cfg.User, cfg.Passwd, cfg.DBName = "tcp", addr, user, password, db
	cfg.Logger = &mysql.NopLogger{}
	cfg.Timeout = 5 * time.Second
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		panic(err) // only a malformed configuration, which this is not
	}
	return conn
}

// login opens a connection as user, checks that it logs in, and closes it
// when t ends.
func login(t *testing.T, addr, user, password, db string) *sql.DB {
	t.Helper()
	h := sql.OpenDB(connector(addr, user, password, db))
	t.Cleanup(func() { h.Close() })
	if err := h.Ping(); err != nil {
		t.Fatalf("log in to %s as %s (database %q): %v", addr, user, db, err)
	}
	return h
}

// wantRefused checks that a login as user is refused with one of the
// error numbers codes.
func wantRefused(t *testing.T, addr, user, password, db string, codes ...uint16) {
	t.Helper()
	h := sql.OpenDB(connector(addr, user, password, db))
	defer h.Close()
	err := h.Ping()
	if !slices.Contains(codes, mysqlErrno(err)) {
		t.Errorf("log in as %s with password %q to database %q: %v; want refused with error %v", user, password, db, err, codes)
	}
}

func currentUser(t *testing.T, db *sql.DB) string {
	t.Helper()
	var who string
	if err := db.QueryRow("SELECT CURRENT_USER()").Scan(&who); err != nil {
		t.Fatal(err)
	}
	return who
}

// mysqlErrno is the server's error number in err, or 0.
func mysqlErrno(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

// nativePasswordHash is what PASSWORD(pw) gives (mysql_native_password):
// "*" and the upper-case hex of SHA1(SHA1(pw)).
func nativePasswordHash(pw string) string {
	h1 := sha1.Sum([]byte(pw))
	h2 := sha1.Sum(h1[:])
	return "*" + strings.ToUpper(hex.EncodeToString(h2[:]))
}

// contractEnv is an environment of the test's own (itest.NewEnv) with
// services.
func contractEnv(t *testing.T, services ...cleanroom.Service) *cleanroom.Environment {
	t.Helper()
	// Each initialisation takes 2.5–3 CPU seconds: many at once on a
	// small, busy machine take far longer than one alone.
	return itest.NewEnv(t, "it-mariadb-image-", cleanroom.Config{ContainerStartupTimeout: 3 * time.Minute}, services...)
}
