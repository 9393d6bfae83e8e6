// Package section keeps one part of BENCHMARKS.md apart from the rest:
// make bench-compare rewrites the file and make bench-services writes the
// per-service figures, and neither loses what the other wrote.
package section

import "strings"

// The markers around the per-service section.
const (
	Begin = "<!-- begin: written by make bench-services -->"
	End   = "<!-- end: written by make bench-services -->"
)

// Of returns the section of doc with its markers and a newline, or ""
// when doc has none (or only half of one).
func Of(doc string) string {
	i := strings.Index(doc, Begin)
	j := strings.Index(doc, End)
	if i < 0 || j < i {
		return ""
	}
	return doc[i:j+len(End)] + "\n"
}

// Put returns doc with its section replaced by body (which is wrapped in
// the markers), or with the section added at the end when doc has none.
func Put(doc, body string) string {
	s := Begin + "\n" + strings.TrimSpace(body) + "\n" + End + "\n"
	if old := Of(doc); old != "" {
		return strings.Replace(doc, old, s, 1)
	}
	if doc != "" && !strings.HasSuffix(doc, "\n\n") {
		doc = strings.TrimRight(doc, "\n") + "\n\n"
	}
	return doc + s
}
