package section

import "testing"

func TestPutAddsThenReplacesAndOfFindsIt(t *testing.T) {
	doc := "# Benchmarks\n\ntable\n"
	once := Put(doc, "## Each service\n\nfirst\n")
	want := "# Benchmarks\n\ntable\n\n" + Begin + "\n## Each service\n\nfirst\n" + End + "\n"
	if once != want {
		t.Fatalf("Put on a document without a section:\n%q\nwant\n%q", once, want)
	}
	twice := Put(once+"after\n", "second")
	want = "# Benchmarks\n\ntable\n\n" + Begin + "\nsecond\n" + End + "\nafter\n"
	if twice != want {
		t.Fatalf("Put on a document with a section:\n%q\nwant\n%q", twice, want)
	}
	if got := Of(twice); got != Begin+"\nsecond\n"+End+"\n" {
		t.Errorf("Of: %q", got)
	}
	if got := Of("# only " + End + " then " + Begin); got != "" {
		t.Errorf("Of with the markers the wrong way round: %q", got)
	}
}
