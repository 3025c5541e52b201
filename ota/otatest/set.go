package otatest

import "hash/fnv"

// node is the root of a set: a treap, a binary search tree on members that
// is also a heap on their priorities, which keeps it balanced in
// expectation. It is persistent: a change copies the O(log n) nodes on its
// path and shares the rest, never changing a node once made. So cloning
// the store copies only the map of roots, older snapshots stay as they
// were, and adding, removing and walking from a member all cost O(log n),
// as they do in the bbolt store. A nil *node is the empty set.
type node struct {
	member      string
	prio        uint64
	left, right *node
}

// priority derives a member's heap priority from its bytes, so that a
// set's shape, and a failing test, does not depend on the run. FNV-1a
// alone gives members that differ in their last byte, as a queue's do,
// related priorities, and the tree a depth in the hundreds; MurmurHash3's
// final mix spreads them.
func priority(member string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(member))
	x := h.Sum64()
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	return x ^ x>>33
}

// has reports whether m is in the set.
func (n *node) has(m string) bool {
	for n != nil {
		switch {
		case m < n.member:
			n = n.left
		case m > n.member:
			n = n.right
		default:
			return true
		}
	}
	return false
}

// with returns the set with m added. m must not be in it.
func (n *node) with(m string, prio uint64) *node {
	if n == nil {
		return &node{member: m, prio: prio}
	}
	if prio > n.prio {
		l, r := n.split(m)
		return &node{member: m, prio: prio, left: l, right: r}
	}
	c := *n
	if m < n.member {
		c.left = n.left.with(m, prio)
	} else {
		c.right = n.right.with(m, prio)
	}
	return &c
}

// split returns the members less than m and those greater. m must not be
// in the set.
func (n *node) split(m string) (less, greater *node) {
	if n == nil {
		return nil, nil
	}
	c := *n
	if m < n.member {
		less, c.left = n.left.split(m)
		return less, &c
	}
	c.right, greater = n.right.split(m)
	return &c, greater
}

// without returns the set with m removed. m must be in it.
func (n *node) without(m string) *node {
	c := *n
	switch {
	case m < n.member:
		c.left = n.left.without(m)
	case m > n.member:
		c.right = n.right.without(m)
	default:
		return merge(n.left, n.right)
	}
	return &c
}

// merge joins two sets whose members are all less in l than in r.
func merge(l, r *node) *node {
	switch {
	case l == nil:
		return r
	case r == nil:
		return l
	case l.prio > r.prio:
		c := *l
		c.right = merge(l.right, r)
		return &c
	}
	c := *r
	c.left = merge(l, r.left)
	return &c
}

// each calls fn with the members greater than after, in order, skipping
// without a visit every subtree that holds none of them.
func (n *node) each(after string, fn func(string) error) error {
	if n == nil {
		return nil
	}
	if n.member > after {
		if err := n.left.each(after, fn); err != nil {
			return err
		}
		if err := fn(n.member); err != nil {
			return err
		}
	}
	return n.right.each(after, fn)
}
