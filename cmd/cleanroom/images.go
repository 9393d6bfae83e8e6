package main

import (
	"slices"
	"strings"

	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
)

// suiteImage is an image the suite in this directory starts.
type suiteImage struct {
	service, image string
}

// suiteImages are the images pull and doctor look at: Postgres' and
// Redis' (their defaults unless configured otherwise), then every other
// image the configuration names ([cleanroom.images], CLEANROOM_<NAME>_IMAGE).
// A Generic service's image that only Go code names is not among them: the
// CLI does not run the tests' TestMain to learn it.
func suiteImages(cfg cleanroom.Config) []suiteImage {
	var out []suiteImage
	for _, svc := range []cleanroom.Service{cleanroom.Postgres(), cleanroom.Redis()} {
		img := svc.Image()
		if o := cfg.Images[svc.Name()]; o != "" {
			img = o
		}
		out = append(out, suiteImage{svc.Name(), img})
	}
	var others []suiteImage
	for name, img := range cfg.Images {
		if name != "postgres" && name != "redis" {
			others = append(others, suiteImage{name, img})
		}
	}
	slices.SortFunc(others, func(a, b suiteImage) int { return strings.Compare(a.service, b.service) })
	return append(out, others...)
}

// imageFix is how a user points service at an image the engine has.
func imageFix(service string) string {
	return "CLEANROOM_" + strings.ToUpper(strings.ReplaceAll(service, "-", "_")) + "_IMAGE"
}
