package kube

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// podmanKube is what Podman 4.3's generator writes for a suite pod (cut).
const podmanKube = `# Save the output of this file and use kubectl create -f to import
# it into Kubernetes.
#
# Created with podman-4.3.1
apiVersion: v1
kind: Pod
metadata:
  labels:
    app: cleanroom-shop
  name: cleanroom-shop
spec:
  containers:
  - args:
    - postgres
    - -c
    - fsync=off
    env:
    - name: POSTGRES_PASSWORD
      value: 0123456789abcdef0123456789abcdef
    - name: PGDATA
      value: /var/lib/postgresql/data/pgdata
    image: localhost/cleanroom/postgres:15
    name: cleanroom-shop-postgres
    ports:
    - containerPort: 5432
      hostIP: 127.0.0.1
      hostPort: 33757
    volumeMounts:
    - mountPath: /var/lib/postgresql/data
      name: tmpfs-host-0
  - args:
    - redis-server
    - --save
    - ""
    - --requirepass
    - 0123456789abcdef0123456789abcdef
    image: localhost/cleanroom/redis:7
    name: cleanroom-shop-redis
  volumes:
  - hostPath:
      path: tmpfs
      type: DirectoryOrCreate
    name: tmpfs-host-0
`

type fakeKube struct{}

func (fakeKube) GenerateKube(context.Context, ...string) ([]byte, error) {
	return []byte(podmanKube), nil
}
func (fakeKube) InspectContainer(_ context.Context, name string) (*podman.ContainerInfo, error) {
	return &podman.ContainerInfo{Entrypoint: []string{"docker-entrypoint.sh"}}, nil
}

func (fakeKube) InspectPod(context.Context, string) (*podman.PodInfo, error) {
	return &podman.PodInfo{Name: "cleanroom-shop", Labels: map[string]string{labels.Secret: "0123456789abcdef0123456789abcdef"}}, nil
}

func TestKubeYAMLMovesTheSecretAndTmpfs(t *testing.T) {
	out, err := YAML(context.Background(), fakeKube{}, "cleanroom-shop")
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	if strings.Contains(s, "0123456789abcdef0123456789abcdef") {
		t.Errorf("the password is still in the YAML in plain text:\n%s", s)
	}
	dec := yaml.NewDecoder(strings.NewReader(s))
	var secret, pod map[string]any
	if err := dec.Decode(&secret); err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(&pod); err != nil {
		t.Fatal(err)
	}
	if secret["kind"] != "Secret" || secret["data"].(map[string]any)[SecretKey] != "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" {
		t.Errorf("secret document: %v", secret)
	}
	for _, want := range []string{
		"secretKeyRef:", "name: cleanroom-shop-secret", "name: CLEANROOM_PASSWORD",
		`exec 'docker-entrypoint.sh' 'redis-server' '--save' '' '--requirepass' "$CLEANROOM_PASSWORD"`,
		"emptyDir:", "medium: Memory", "hostPort: 33757",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("YAML lacks %q:\n%s", want, s)
		}
	}
	// The shell line gives the server the arguments it had, the empty
	// one included.
	var line string
	for _, c := range pod["spec"].(map[string]any)["containers"].([]any) {
		if cmd, ok := c.(map[string]any)["command"].([]any); ok {
			line = cmd[2].(string)
		}
	}
	printArgs := strings.Replace(line, "exec 'docker-entrypoint.sh'", `printf '[%s]'`, 1)
	cmd := exec.Command("/bin/sh", "-c", printArgs)
	cmd.Env = []string{"CLEANROOM_PASSWORD=pw"}
	got, err := cmd.Output()
	if want := "[redis-server][--save][][--requirepass][pw]"; err != nil || string(got) != want {
		t.Errorf("sh -c %q: %q, %v; want %q", printArgs, got, err, want)
	}
	if strings.Contains(s, "path: tmpfs") {
		t.Errorf("the tmpfs host path is still there:\n%s", s)
	}
}
