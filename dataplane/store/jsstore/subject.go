package jsstore

import (
	"errors"
	"strings"
)

// Subject mapping: an MQTT topic of an instance becomes the NATS subject
//
//	<prefix>.<kind>.<inst>.<class>.<level>….<level>.~
//
// where <kind> is "m" (the instance's commit log) or "r" (retained
// messages), <inst> is the escaped instance ID, <class> is "t" for normal
// topics and "s" for topics starting with '$', each MQTT level is one
// escaped token and "~" ends the topic.
//
// Escaping a level (and the instance ID): the bytes NATS reserves in a
// token ('.', '*', '>', whitespace and other bytes ≤ 0x20, 0x7F) and the
// escape byte '~' itself become "~XX" (upper-case hex). An empty level is
// the token "~~" (NATS has no empty tokens). No escaped level can be "~" or
// "~~", so the mapping is reversible (SubjectTopic) and injective.
//
// A filter maps the same way with '+' → '*' and '#' → '>' replacing the
// "~" terminator: "a/#" → "….t.a.>" matches "….t.a.~" (the parent level,
// as MQTT requires) and every deeper topic; "a/+" → "….t.a.*.~" matches one
// level only. A filter whose first level is a wildcard gets class "t", so it
// never matches '$' topics; a literal first level picks its own class. The
// NATS subject match is thus exactly MQTT's match: no post-filtering.

// Token constants of the mapping.
const (
	endToken   = "~"
	emptyToken = "~~"
	escByte    = '~'
	classTopic = "t"
	classSys   = "s"
)

const hexDigits = "0123456789ABCDEF"

func needsEscape(c byte) bool {
	return c <= ' ' || c == 0x7F || c == '.' || c == '*' || c == '>' || c == escByte
}

// EscapeToken returns the NATS token for one MQTT level (or instance ID).
func EscapeToken(level string) string {
	if level == "" {
		return emptyToken
	}
	n := 0
	for i := 0; i < len(level); i++ {
		if needsEscape(level[i]) {
			n++
		}
	}
	if n == 0 {
		return level
	}
	var b strings.Builder
	b.Grow(len(level) + 2*n)
	for i := 0; i < len(level); i++ {
		c := level[i]
		if needsEscape(c) {
			b.WriteByte(escByte)
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

var errBadToken = errors.New("jsstore: malformed subject token")

// UnescapeToken reverses EscapeToken.
func UnescapeToken(tok string) (string, error) {
	switch tok {
	case emptyToken:
		return "", nil
	case "", endToken:
		return "", errBadToken
	}
	if strings.IndexByte(tok, escByte) < 0 {
		return tok, nil
	}
	b := make([]byte, 0, len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c != escByte {
			b = append(b, c)
			continue
		}
		if i+2 >= len(tok) {
			return "", errBadToken
		}
		hi, lo := strings.IndexByte(hexDigits, tok[i+1]), strings.IndexByte(hexDigits, tok[i+2])
		if hi < 0 || lo < 0 {
			return "", errBadToken
		}
		b = append(b, byte(hi<<4|lo))
		i += 2
	}
	return string(b), nil
}

func classOf(first string) string {
	if strings.HasPrefix(first, "$") {
		return classSys
	}
	return classTopic
}

// base returns "<prefix>.<kind>.<inst>".
func base(prefix, kind, instance string) string {
	return prefix + "." + kind + "." + EscapeToken(instance)
}

// TopicSubject maps a topic (no wildcards) of an instance to its subject.
func TopicSubject(prefix, kind, instance, topic string) string {
	levels := strings.Split(topic, "/")
	var b strings.Builder
	b.WriteString(base(prefix, kind, instance))
	b.WriteByte('.')
	b.WriteString(classOf(levels[0]))
	for _, l := range levels {
		b.WriteByte('.')
		b.WriteString(EscapeToken(l))
	}
	b.WriteString("." + endToken)
	return b.String()
}

// FilterSubject maps an MQTT filter (validated; "#" only last) of an
// instance to the NATS subject filter that matches exactly the subjects
// of the topics the MQTT filter matches.
func FilterSubject(prefix, kind, instance, filter string) string {
	levels := strings.Split(filter, "/")
	var b strings.Builder
	b.WriteString(base(prefix, kind, instance))
	b.WriteByte('.')
	if levels[0] == "+" || levels[0] == "#" {
		b.WriteString(classTopic)
	} else {
		b.WriteString(classOf(levels[0]))
	}
	for _, l := range levels {
		b.WriteByte('.')
		switch l {
		case "+":
			b.WriteByte('*')
		case "#":
			b.WriteByte('>')
			return b.String()
		default:
			b.WriteString(EscapeToken(l))
		}
	}
	b.WriteString("." + endToken)
	return b.String()
}

// AllSubject is the filter of every topic of an instance ('$' ones too).
func AllSubject(prefix, kind, instance string) string {
	return base(prefix, kind, instance) + ".>"
}

// SubjectTopic reverses TopicSubject: it returns the instance and topic.
func SubjectTopic(prefix, kind, subject string) (instance, topic string, err error) {
	rest, ok := strings.CutPrefix(subject, prefix+"."+kind+".")
	if !ok {
		return "", "", errBadToken
	}
	toks := strings.Split(rest, ".")
	if len(toks) < 4 || toks[len(toks)-1] != endToken {
		return "", "", errBadToken
	}
	if instance, err = UnescapeToken(toks[0]); err != nil {
		return "", "", err
	}
	levels := make([]string, 0, len(toks)-3)
	for _, t := range toks[2 : len(toks)-1] {
		l, err := UnescapeToken(t)
		if err != nil {
			return "", "", err
		}
		levels = append(levels, l)
	}
	topic = strings.Join(levels, "/")
	if toks[1] != classOf(levels[0]) {
		return "", "", errBadToken
	}
	return instance, topic, nil
}
