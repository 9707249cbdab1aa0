package mqtttopic

import "strings"

// Index holds a set of filters by level so that a topic is matched in time
// proportional to its depth, not to the number of filters. It matches like
// Match (the "$" rule included). An Index is not safe for concurrent use.
type Index struct {
	children map[string]*Index
	filter   string // non-empty when a filter ends here
	hash     string // filter ending in "#" below this level
}

// NewIndex returns an empty Index.
func NewIndex() *Index { return &Index{children: map[string]*Index{}} }

// Add puts a valid filter in the index.
func (t *Index) Add(filter string) {
	n := t
	for _, l := range strings.Split(filter, "/") {
		if l == "#" {
			n.hash = filter
			return
		}
		c := n.children[l]
		if c == nil {
			c = NewIndex()
			n.children[l] = c
		}
		n = c
	}
	n.filter = filter
}

// Remove deletes filter; it reports whether the index is now empty.
func (t *Index) Remove(filter string) bool {
	t.removeLevels(strings.Split(filter, "/"))
	return t.empty()
}

func (t *Index) removeLevels(levels []string) {
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

func (t *Index) empty() bool { return len(t.children) == 0 && t.filter == "" && t.hash == "" }

// Match appends to dst every filter of the index that matches topic.
func (t *Index) Match(dst []string, topic string) []string {
	return t.matchLevels(dst, topic, true)
}

func (t *Index) matchLevels(dst []string, rest string, first bool) []string {
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

func (t *Index) next(dst []string, tail string, more bool) []string {
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
