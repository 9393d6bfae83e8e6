// Package isolation gives each test its own slice of a shared PostgreSQL or
// Redis server, in one line, and takes it away when the test ends. It needs
// only URLs: it works with Cleanroom's containers and with any other server.
//
//	var migrations = isolation.SQLDir(os.DirFS("migrations"), ".") // 0001_init.sql, …
//
//	func TestOrders(t *testing.T) {
//		t.Parallel()
//		db := isolation.NewDatabase(t, os.Getenv("DATABASE_URL"), migrations)
//		pool, err := pgxpool.New(context.Background(), db.URL)
//		if err != nil {
//			t.Fatal(err)
//		}
//		defer pool.Close()
//		// … a database of its own, migrated, dropped when the test ends
//	}
//
// The modes, cheapest first (numbers from `make bench`; see the
// README for the table):
//
//   - Tx (pgx) / SQLTx (database/sql): a transaction rolled back at the end. Sub-millisecond. The
//     test must do all its work through that transaction; it cannot isolate
//     code that commits on its own, other sessions' DDL or sequences.
//   - NewSchema: a schema with the migrations applied, reached through a URL
//     whose search_path is that schema. Isolates all unqualified names;
//     costs a migration run per test.
//   - NewDatabase: a clone of a template database the migrations built once
//     (once across all test processes: a Postgres advisory lock, taken in
//     the postgres database, guards the build, and the template is marked
//     finished only as its last step; CLEANROOM_REBUILD=1 rebuilds it once
//     per run).
//     Isolates everything but roles and server settings; costs one CREATE
//     DATABASE … TEMPLATE.
//   - Truncate: empties every table between tests of a shared database.
//   - RedisDB: a logical database leased through the server itself, so
//     parallel test processes never share one; flushed when given back. A
//     lease lost (not renewed within CLEANROOM_REDIS_LEASE_TTL, 30 s) fails
//     the test that held it.
//     RedisPrefix is the key-prefix mode for servers without logical
//     databases; FlushDB empties one database.
//   - NewNATSPrefix: a subject prefix and a connection of the test's own on
//     a shared NATS server; the JetStream streams, buckets and consumers
//     named with the prefix (or whose subjects lie under it) are deleted
//     when the test ends. A connection's cost; isolation by convention:
//     the test's code must use the prefix.
//   - NewRabbitMQVhost: a virtual host of the test's own on a shared
//     RabbitMQ server, made through its management API and deleted with
//     everything in it when the test ends. Isolation by the server itself:
//     queue and exchange names need no prefix. Tens of milliseconds.
//
// A database or schema of a failed test is kept, and the log names the file
// (mode 0600, in the user's cache directory) that holds its URL, so that you
// can look at what the test left without the password in the test log;
// passing tests leave nothing.
package isolation
