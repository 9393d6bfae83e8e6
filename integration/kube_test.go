package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/healthcheck"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// playBack plays Kubernetes YAML with Podman under a new pod name and new
// host ports (the original pod still runs), and returns the new host port
// of each container port. Secrets become Podman secrets first: Podman 4.3's
// kube play stores a Secret document in a form its own secretKeyRef lookup
// cannot read, so the test stores it as that lookup wants (a JSON map of
// the Secret's data), as `podman secret create` would.
func playBack(t *testing.T, c *podman.Client, y []byte, name string) map[int]int {
	t.Helper()
	ctx := context.Background()
	ports := map[int]int{}
	dec := yaml.NewDecoder(bytes.NewReader(y))
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatal(err)
		}
		switch doc["kind"] {
		case "Secret":
			secretName := doc["metadata"].(map[string]any)["name"].(string)
			data, _ := json.Marshal(doc["data"])
			if err := c.CreateSecret(ctx, secretName, data); err != nil {
				t.Fatalf("create secret %s: %v", secretName, err)
			}
			t.Cleanup(func() { _ = c.RemoveSecret(context.Background(), secretName) })
		case "Pod":
			doc["metadata"].(map[string]any)["name"] = name
			for _, ct := range doc["spec"].(map[string]any)["containers"].([]any) {
				ps, _ := ct.(map[string]any)["ports"].([]any)
				for _, p := range ps {
					pm := p.(map[string]any)
					hp := freePort(t)
					ports[pm["containerPort"].(int)] = hp
					pm["hostPort"] = hp
				}
			}
			out, err := yaml.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.RemovePod(context.Background(), name) })
			if err := c.PlayKube(ctx, out); err != nil {
				t.Fatalf("kube play:\n%s\n%v", out, err)
			}
		}
	}
	return ports
}

func TestKubeYAMLRoundTrip(t *testing.T) {
	t.Parallel()
	env, _ := newEnv(t, cleanroom.Config{}, cleanroom.Postgres(), cleanroom.Redis())
	ctx := context.Background()
	y, err := env.KubeYAML(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pg, err := env.Get(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	password := pg.Postgres().Password()
	if strings.Contains(string(y), password) {
		t.Fatalf("the password is in the YAML in plain text:\n%s", y)
	}
	for _, want := range []string{"kind: Secret", "secretKeyRef", "medium: Memory", `"$CLEANROOM_PASSWORD"`} {
		if !strings.Contains(string(y), want) {
			t.Errorf("the YAML lacks %q:\n%s", want, y)
		}
	}

	c := connect(t)
	ports := playBack(t, c, y, "crit-kube-"+randomHex(3))
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	url := fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", pg.Postgres().User(), password, bindAddress, ports[5432], pg.Postgres().Database())
	probe := healthcheck.Postgres(url)
	defer probe.Close()
	if err := healthcheck.Wait(wctx, probe, healthcheck.Options{}); err != nil {
		t.Errorf("Postgres of the played-back YAML: %v", err)
	}
	if err := healthcheck.Wait(wctx, healthcheck.Redis(fmt.Sprintf("%s:%d", bindAddress, ports[6379]), password), healthcheck.Options{}); err != nil {
		t.Errorf("Redis of the played-back YAML (its password from the Secret through $CLEANROOM_PASSWORD): %v", err)
	}
}
