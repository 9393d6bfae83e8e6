package isolate

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNATSPrefixNameIsAPrefix(t *testing.T) {
	for _, test := range []string{"TestOrders/paid order (EUR)", "Test", "ß/√", "TestA/b_c"} {
		p := NATSPrefixName(test)
		if !prefixRE.MatchString(p) {
			t.Errorf("NATSPrefixName(%q) = %q: not of the form Owners looks for", test, p)
		}
		if diff := cmp.Diff([]string{p}, Owners(p+"_ORDERS", nil)); diff != "" {
			t.Errorf("owners of %s_ORDERS (-want +got):\n%s", p, diff)
		}
	}
	if NATSPrefixName("TestX") == NATSPrefixName("TestX") {
		t.Error("two prefixes for one test are equal")
	}
}

func TestNATSOwnership(t *testing.T) {
	const p = "t_testorders_1a2b3c4d"
	for _, tc := range []struct {
		name     string
		subjects []string
		owned    bool
	}{
		{p + "_ORDERS", nil, true},
		{"KV_" + p + "_cache", []string{"$KV." + p + "_cache.>"}, true},
		{"OBJ_" + p + "_files", nil, true},
		{"ORDERS", []string{p + ".orders.>", p + ".refunds"}, true},
		{"ORDERS", []string{p + ".orders.>", "orders.>"}, false}, // one subject is not the test's
		{"ORDERS", nil, false},
		{p, nil, false},                          // the prefix alone is no name of its
		{p + "0_ORDERS", nil, false},             // another prefix that starts alike
		{"t_testorders_1a2b3c4d5_X", nil, false}, // likewise
		{"ORDERS", []string{p + "x.orders"}, false},
		{"KV_other", []string{p + "_other.x"}, false},
	} {
		got := OwnsName(p, tc.name) || OwnsSubjects(p, tc.subjects)
		if got != tc.owned {
			t.Errorf("stream %s %v owned by %s: %v, want %v", tc.name, tc.subjects, p, got, tc.owned)
		}
	}
}

func TestNATSOwners(t *testing.T) {
	for _, tc := range []struct {
		name     string
		subjects []string
		want     []string
	}{
		{"ORDERS", []string{"orders.>"}, nil},
		{"t_a_1a2b3c4d_ORDERS", nil, []string{"t_a_1a2b3c4d"}},
		{"KV_t_a_1a2b3c4d_cache", []string{"$KV.t_a_1a2b3c4d_cache.>"}, []string{"t_a_1a2b3c4d"}},
		// A test name that itself looks like a prefix: both candidates.
		{"t_a_1a2b3c4d_b_5e6f7a8b_X", nil, []string{"t_a_1a2b3c4d", "t_a_1a2b3c4d_b_5e6f7a8b"}},
		{"EVENTS", []string{"t_b_00000000.events.>", "t_c_ffffffff.x", "t_b_00000000.y"}, []string{"t_b_00000000", "t_c_ffffffff"}},
		{"t_a_1a2b3c4d", nil, nil}, // no "_" after it: not a name of the prefix
		{"T_A_1A2B3C4D_X", nil, nil},
	} {
		if diff := cmp.Diff(tc.want, Owners(tc.name, tc.subjects)); diff != "" {
			t.Errorf("Owners(%s, %v) (-want +got):\n%s", tc.name, tc.subjects, diff)
		}
	}
}
