package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
)

// pull and doctor know Postgres and Redis, and every other service whose
// image the configuration names (a Generic service's, say).
func TestSuiteImagesIncludeConfiguredGenericServices(t *testing.T) {
	got := suiteImages(cleanroom.Config{Images: map[string]string{
		"postgres": "localhost/pg:17", "object-store": "localhost/minio:1", "mailer": "localhost/mailpit:1",
	}})
	want := []suiteImage{
		{"postgres", "localhost/pg:17"},
		{"redis", cleanroom.Redis().Image()},
		{"mailer", "localhost/mailpit:1"},
		{"object-store", "localhost/minio:1"},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(suiteImage{})); diff != "" {
		t.Errorf("suiteImages (-want +got):\n%s", diff)
	}
	if got := imageFix("object-store"); got != "CLEANROOM_OBJECT_STORE_IMAGE" {
		t.Errorf("imageFix: %s", got)
	}
}
