package kube_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/cleanroom-go/cleanroom/internal/kube"
	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// fakeEngine answers as Podman would for a suite pod with one Redis
// container whose password is on its command line and a tmpfs mount.
type fakeEngine struct{}

func (fakeEngine) GenerateKube(context.Context, ...string) ([]byte, error) {
	return []byte(`apiVersion: v1
kind: Pod
metadata:
  name: cleanroom-shop
spec:
  containers:
  - name: cleanroom-shop-redis
    image: docker.io/library/redis:7
    args: [redis-server, --requirepass, s3cret]
    volumeMounts:
    - {mountPath: /data, name: tmpfs-host-0}
  volumes:
  - name: tmpfs-host-0
    hostPath: {path: tmpfs, type: DirectoryOrCreate}
`), nil
}

func (fakeEngine) InspectPod(context.Context, string) (*podman.PodInfo, error) {
	return &podman.PodInfo{Name: "cleanroom-shop", Labels: map[string]string{labels.Secret: "s3cret"}}, nil
}

func (fakeEngine) InspectContainer(context.Context, string) (*podman.ContainerInfo, error) {
	return &podman.ContainerInfo{Entrypoint: []string{"docker-entrypoint.sh"}}, nil
}

// YAML rewrites Podman's kube YAML: the password moves into a Secret that
// the container reads through an environment variable, and the tmpfs
// becomes an emptyDir in memory.
func ExampleYAML() {
	out, err := kube.YAML(context.Background(), fakeEngine{}, "cleanroom-shop")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(out))
	// Output:
	// # The Cleanroom suite pod cleanroom-shop, written by Podman's kube generator and
	// # cleanroom (password in a Secret, tmpfs as emptyDir in memory).
	// # kubectl apply -f this-file   or   podman kube play this-file
	// apiVersion: v1
	// data:
	//   password: czNjcmV0
	// kind: Secret
	// metadata:
	//   name: cleanroom-shop-secret
	// type: Opaque
	// ---
	// apiVersion: v1
	// kind: Pod
	// metadata:
	//   name: cleanroom-shop
	// spec:
	//   containers:
	//     - command:
	//         - /bin/sh
	//         - -c
	//         - exec 'docker-entrypoint.sh' 'redis-server' '--requirepass' "$CLEANROOM_PASSWORD"
	//       env:
	//         - name: CLEANROOM_PASSWORD
	//           valueFrom:
	//             secretKeyRef:
	//               key: password
	//               name: cleanroom-shop-secret
	//       image: docker.io/library/redis:7
	//       name: cleanroom-shop-redis
	//       volumeMounts:
	//         - mountPath: /data
	//           name: tmpfs-host-0
	//   volumes:
	//     - emptyDir:
	//         medium: Memory
	//       name: tmpfs-host-0
}

// The YAML of a running suite pod, from the engine itself.
func ExampleYAML_podman() {
	ctx := context.Background()
	c, err := podman.Connect(ctx, podman.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	out, err := kube.YAML(ctx, c, "cleanroom-shop")
	if err != nil {
		log.Fatal(err)
	}
	os.Stdout.Write(out) // kubectl apply -f - , or podman kube play -
}
