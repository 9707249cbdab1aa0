package store

import "strings"

// filterTrie indexes an instance's wildcard filters by level so that a
// publish is matched in time proportional to its topic depth, not to the
// number of filters.
type filterTrie struct {
	children map[string]*filterTrie
	filter   string // non-empty when a filter ends here
	hash     string // filter ending in "#" below this level
}

func newFilterTrie() *filterTrie { return &filterTrie{children: map[string]*filterTrie{}} }

func (t *filterTrie) add(filter string) {
	n := t
	for _, l := range strings.Split(filter, "/") {
		if l == "#" {
			n.hash = filter
			return
		}
		c := n.children[l]
		if c == nil {
			c = newFilterTrie()
			n.children[l] = c
		}
		n = c
	}
	n.filter = filter
}

// remove deletes filter; it reports whether the trie is now empty.
func (t *filterTrie) remove(filter string) bool {
	t.removeLevels(strings.Split(filter, "/"))
	return t.empty()
}

func (t *filterTrie) removeLevels(levels []string) {
	if levels[0] == "#" {
		t.hash = ""
		return
	}
	c := t.children[levels[0]]
	if c == nil {
		return
	}
	if len(levels) == 1 {
		c.filter = ""
	} else {
		c.removeLevels(levels[1:])
	}
	if c.empty() {
		delete(t.children, levels[0])
	}
}

func (t *filterTrie) empty() bool { return len(t.children) == 0 && t.filter == "" && t.hash == "" }

// match appends to dst every filter that matches topic (MQTT rules,
// including "a/#" matching "a" and '$' topics not matching leading wildcards).
func (t *filterTrie) match(dst []string, topic string) []string {
	return t.matchLevels(dst, topic, true)
}

func (t *filterTrie) matchLevels(dst []string, rest string, first bool) []string {
	dollar := first && strings.HasPrefix(rest, "$")
	if t.hash != "" && !dollar {
		dst = append(dst, t.hash)
	}
	level, tail, more := strings.Cut(rest, "/")
	if c := t.children[level]; c != nil {
		dst = c.next(dst, tail, more)
	}
	if c := t.children["+"]; c != nil && !dollar {
		dst = c.next(dst, tail, more)
	}
	return dst
}

func (t *filterTrie) next(dst []string, tail string, more bool) []string {
	if more {
		return t.matchLevels(dst, tail, false)
	}
	if t.filter != "" {
		dst = append(dst, t.filter)
	}
	if t.hash != "" { // "a/#" matches "a"
		dst = append(dst, t.hash)
	}
	return dst
}
