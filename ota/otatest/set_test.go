package otatest

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// members lists the members of the set rooted at n after after.
func members(n *node, after string) []string {
	var ms []string
	_ = n.each(after, func(m string) error {
		ms = append(ms, m)
		return nil
	})
	return ms
}

// TestSetTreeAgainstMap checks the persistent tree against a map after
// every one of a few thousand random changes, and that every earlier
// version, which older snapshots still hold, is left as it was.
func TestSetTreeAgainstMap(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var root *node
	ref := map[string]bool{}
	type version struct {
		root *node
		want []string
	}
	var versions []version
	for i := range 3000 {
		m := fmt.Sprint(r.IntN(500))
		if r.IntN(3) == 0 {
			if root.has(m) != ref[m] {
				t.Fatalf("change %d: has(%q) = %v, want %v", i, m, root.has(m), ref[m])
			}
			if ref[m] {
				root = root.without(m)
				delete(ref, m)
			}
		} else if !root.has(m) {
			root = root.with(m, priority(m))
			ref[m] = true
		}
		want := slices.Sorted(maps.Keys(ref))
		if i%100 == 0 {
			versions = append(versions, version{root, want})
		}
		after := fmt.Sprint(r.IntN(500))
		var wantAfter []string
		for _, w := range want {
			if w > after {
				wantAfter = append(wantAfter, w)
			}
		}
		if got := members(root, after); !slices.Equal(got, wantAfter) {
			t.Fatalf("change %d: members after %q = %v, want %v", i, after, got, wantAfter)
		}
	}
	for i, v := range versions {
		if got := members(v.root, ""); !slices.Equal(got, v.want) {
			t.Errorf("version %d changed: members = %v, want %v", i, got, v.want)
		}
	}
}

// A queue's members arrive in order; the tree must stay shallow anyway, or
// a fake holding a 100,000-job queue would walk a list.
func TestSetTreeStaysBalanced(t *testing.T) {
	var root *node
	const n = 100_000
	for i := range n {
		m := fmt.Sprintf("job-%08d", i)
		root = root.with(m, priority(m))
	}
	var depth func(*node) int
	depth = func(n *node) int {
		if n == nil {
			return 0
		}
		return 1 + max(depth(n.left), depth(n.right))
	}
	// A random binary search tree is about 4.3 ln n deep, 50 here (41 with
	// these priorities); ordered inserts into a plain one would make 100,000.
	if d := depth(root); d > 60 {
		t.Errorf("depth after %d ordered inserts = %d, want at most 60", n, d)
	}
}
