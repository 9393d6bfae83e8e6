// Command services measures each service Cleanroom offers on this machine
// and writes the figures into BENCHMARKS.md, in a section of its own that
// make bench-compare keeps: for each service, a cold start (pod and
// container to ready, data initialised), a start from a snapshot where the
// service takes one, and what each per-test isolation mode costs a test.
// The figures come from the repository's testing.B benchmarks, run with
// `go test -bench` from the repository root; the report names each one.
//
//	make bench-services        (from the repository root)
//	cd bench && go run ./cmd/services [-o ../BENCHMARKS.md]
//
// It needs the Podman service and the images of `make images`, named by
// the CLEANROOM_*_IMAGE variables as make test names them.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/cleanroom-go/cleanroom/bench/internal/section"
)

// A run is one go test -bench command: the benchmarks it runs and how
// many iterations each gets.
type run struct {
	pkg, pattern, benchtime string
}

var runs = []run{
	{"./integration/", "^BenchmarkColdStart$", "5x"},
	{"./integration/", "^BenchmarkColdStartFromSnapshot$", "5x"},
	{"./integration/isolation/", "^BenchmarkIsolation$", "200x"},
	{"./integration/mariadb/", "^BenchmarkMariaDBIsolation$", "200x"},
	{"./integration/nats/", "^BenchmarkNATSIsolation$", "200x"},
	{"./integration/rabbitmq/", "^BenchmarkRabbitMQIsolation$", "50x"},
}

// startRows: per service, its cold-start benchmark and its snapshot one
// ("" where the service takes no snapshot, with why).
var startRows = []struct {
	service, cold, snapshot, noSnapshot string
}{
	{"postgres", "ColdStart/postgres", "ColdStartFromSnapshot/postgres", ""},
	{"redis", "ColdStart/redis", "", "nothing to initialise: an empty data set"},
	{"mariadb", "ColdStart/mariadb", "ColdStartFromSnapshot/mariadb", ""},
	{"nats", "ColdStart/nats", "", "nothing to initialise: JetStream's store starts empty"},
	{"rabbitmq", "ColdStart/rabbitmq", "", "the time is the Erlang VM's boot, not initialisation"},
}

// isolationRows: per service, each isolation mode, what it gives a test,
// and the benchmark that measures it (metric "" is ns/op).
var isolationRows = []struct {
	service, mode, bench, metric, note string
}{
	{"postgres", "`cleanroom.NewDatabase(t, migrations)`, from the warm pool", "Isolation/warm-pool-take", "ms-median", "median take of a spare clone (10 tables)"},
	{"postgres", "`cleanroom.NewDatabase`, a clone made while the test waits", "Isolation/template-database-10-tables", "", "CREATE DATABASE … TEMPLATE of 10 tables, and its drop"},
	{"postgres", "`cleanroom.NewSchema(t, migrations)`", "Isolation/schema-10-tables-serial-index-fk", "", "10 tables with serial keys, indexes, foreign keys: made and dropped"},
	{"postgres", "`cleanroom.Tx(t)`", "Isolation/transaction", "", "begin and roll back"},
	{"postgres", "`isolation.Truncate`", "Isolation/truncate-11-tables", "", "11 tables"},
	{"redis", "`cleanroom.RedisDB(t)`", "Isolation/redis-database-lease", "", "lease a logical database, flush it on return"},
	{"mariadb", "`cleanroom.NewMariaDBDatabase(t, migrations)`", "MariaDBIsolation/database-copy-2-tables-seeded", "", "template copied: 2 tables with rows"},
	{"mariadb", "`cleanroom.NewMariaDBDatabase(t, migrations)`", "MariaDBIsolation/database-copy-10-tables-index-fk", "", "template copied: 10 tables, indexes, foreign keys"},
	{"mariadb", "(migrations run per test instead, for comparison)", "MariaDBIsolation/database-migrate-2-tables-seeded", "", "2 tables with rows"},
	{"mariadb", "(migrations run per test instead, for comparison)", "MariaDBIsolation/database-migrate-10-tables-index-fk", "", "10 tables, indexes, foreign keys"},
	{"mariadb", "`cleanroom.MariaDBTx(t)`", "MariaDBIsolation/transaction", "", "begin and roll back"},
	{"nats", "`cleanroom.NATSPrefix(t)`", "NATSIsolation/prefix", "", "a prefix and a connection of the test's own"},
	{"nats", "`cleanroom.NATSPrefix(t)`", "NATSIsolation/prefix-stream-consumer-bucket", "", "with a stream, a consumer and a bucket made and deleted"},
	{"nats", "(a bare connection, for comparison)", "NATSIsolation/connection", "", ""},
	{"rabbitmq", "`cleanroom.RabbitMQVhost(t)`", "RabbitMQIsolation/vhost", "", "a vhost with permissions, held, deleted at the end"},
	{"rabbitmq", "`cleanroom.RabbitMQVhost(t)`", "RabbitMQIsolation/vhost-connection-queue", "", "with a connection to it and a queue declared"},
	{"rabbitmq", "(a bare AMQP connection, for comparison)", "RabbitMQIsolation/connection", "", ""},
}

func main() {
	out := flag.String("o", "../BENCHMARKS.md", "the file whose per-service section to write")
	root := flag.String("root", "..", "the repository's root, where go test runs")
	flag.Parse()
	if err := measure(*out, *root); err != nil {
		fmt.Fprintln(os.Stderr, "services:", err)
		os.Exit(1)
	}
}

func measure(out, root string) error {
	load, _ := os.ReadFile("/proc/loadavg")
	results := map[string]map[string]float64{}
	for _, r := range runs {
		fmt.Printf("go test -bench %s -benchtime %s %s …\n", r.pattern, r.benchtime, r.pkg)
		cmd := exec.Command("go", "test", "-count=1", "-run", "^$", "-bench", r.pattern, "-benchtime", r.benchtime, r.pkg)
		cmd.Dir = root
		b, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("go test -bench %s %s: %v\n%s", r.pattern, r.pkg, err, b)
		}
		for name, m := range parse(string(b)) {
			results[name] = m
		}
	}
	body, err := render(results, strings.Join(strings.Fields(string(load))[:min(3, len(strings.Fields(string(load))))], " "))
	if err != nil {
		return err
	}
	fmt.Println(body)
	old, err := os.ReadFile(out)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	return os.WriteFile(out, []byte(section.Put(string(old), body)), 0o644)
}

// parse reads go test -bench output: for each benchmark (name without
// "Benchmark" and the -N GOMAXPROCS suffix), its metrics by unit.
func parse(output string) map[string]map[string]float64 {
	res := map[string]map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(output))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndex(name, "-"); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		m := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			m[f[i+1]] = v
		}
		if len(m) > 0 {
			res[name] = m
		}
	}
	return res
}

// value is a benchmark's figure in milliseconds: metric ("" is ns/op).
func value(results map[string]map[string]float64, bench, metric string) (float64, error) {
	m, ok := results[bench]
	if !ok {
		return 0, fmt.Errorf("no result for Benchmark%s in the go test output", bench)
	}
	if metric == "" {
		v, ok := m["ns/op"]
		if !ok {
			return 0, fmt.Errorf("Benchmark%s has no ns/op", bench)
		}
		return v / 1e6, nil
	}
	v, ok := m[metric]
	if !ok {
		return 0, fmt.Errorf("Benchmark%s has no %s", bench, metric)
	}
	return v, nil
}

func ms(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.2f s", v/1000)
	case v >= 10:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 1:
		return fmt.Sprintf("%.1f ms", v)
	default:
		return fmt.Sprintf("%.2f ms", v)
	}
}

// render writes the section; load is the load average when the run began.
func render(results map[string]map[string]float64, load string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "## Each service\n\nWritten by `make bench-services` (bench/cmd/services) on %s, %d CPUs, %s/%s, from the benchmarks it names (`go test -bench`, run one after another; load average %s when it began). Images: %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, load, images())
	b.WriteString("### Start-up\n\nWhat the first test of a suite waits for: the pod and the service's container, from creation to ready by the service's own protocol, data on tmpfs (mean of 5). From a snapshot: the same with the service's initialised data in a snapshot image made beforehand, and, of that, the container's start to ready.\n\n")
	b.WriteString("| service | cold start | from a snapshot | benchmark |\n|---|---|---|---|\n")
	for _, r := range startRows {
		cold, err := value(results, r.cold, "")
		if err != nil {
			return "", err
		}
		snap := "— (" + r.noSnapshot + ")"
		benches := "`Benchmark" + r.cold + "`"
		if r.snapshot != "" {
			total, err := value(results, r.snapshot, "")
			if err != nil {
				return "", err
			}
			ready, err := value(results, r.snapshot, "ms-start-to-ready")
			if err != nil {
				return "", err
			}
			snap = fmt.Sprintf("%s (start to ready %s)", ms(total), ms(ready))
			benches += ", `Benchmark" + r.snapshot + "`"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", r.service, ms(cold), snap, benches)
	}
	b.WriteString("\n### Per-test isolation\n\nWhat a test pays for its slice of the service, set up and taken down (mean per test; the warm pool's take is a median).\n\n")
	b.WriteString("| service | mode | per test | what was measured | benchmark |\n|---|---|---|---|---|\n")
	for _, r := range isolationRows {
		v, err := value(results, r.bench, r.metric)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | `Benchmark%s` |\n", r.service, r.mode, ms(v), r.note, r.bench)
	}
	return b.String(), nil
}

// images names the images the benchmarks ran, as make test names them.
func images() string {
	var s []string
	for _, k := range []string{"POSTGRES", "REDIS", "MARIADB", "NATS", "RABBITMQ"} {
		if v := os.Getenv("CLEANROOM_" + k + "_IMAGE"); v != "" {
			s = append(s, "`"+v+"`")
		}
	}
	if len(s) == 0 {
		return "the library's defaults"
	}
	return strings.Join(s, ", ")
}
