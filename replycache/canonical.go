package replycache

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"hash"
	"slices"
	"unicode/utf8"
)

// errSyntax is the error of a text that is not one JSON value. A request
// the cache cannot read is not cached; the upstream answers it as it
// would without the cache.
var errSyntax = errors.New("replycache: not a JSON value")

// maxDepth bounds the nesting canonicalisation follows, as encoding/json
// bounds its own, so that a hostile body cannot exhaust the stack.
const maxDepth = 1000

// canonicalizer writes a JSON value in its canonical form: object keys
// sorted and unique (the last of a repeated key kept, as encoding/json and
// Python's json read it), no insignificant whitespace, strings in one
// spelling (decoded and re-encoded when written with escapes), numbers as
// written. Two texts that every JSON reader takes for the same value get
// one canonical form, so they get one cache key. One canonicalizer is
// reused request after request (it is pooled): its buffers keep their
// capacity.
type canonicalizer struct {
	in  []byte
	i   int
	out []byte
	// spans are the members of the objects being written, innermost
	// last: each object uses spans from its own base on.
	spans []span
	// tmp holds an object's members while they are reordered.
	tmp []byte
	// top are the members of the value when it is an object, in order.
	top []span
	// h hashes keys; it is reset for each. scratch holds what is hashed
	// beside the body, and sum the hash.
	h       hash.Hash
	scratch []byte
	sum     [sha256.Size]byte
}

// span is one member of an object written to out: its key is
// out[key:colon] (quotes included), its value out[colon+1:end].
type span struct{ key, colon, end int }

// canonical replaces c.out with the canonical form of in, which must be
// exactly one JSON value with optional whitespace around it.
func (c *canonicalizer) canonical(in []byte) error {
	c.in, c.i, c.out, c.spans, c.top = in, 0, c.out[:0], c.spans[:0], c.top[:0]
	c.space()
	if err := c.value(0); err != nil {
		return err
	}
	c.space()
	if c.i != len(c.in) {
		return errSyntax
	}
	return nil
}

func (c *canonicalizer) space() {
	for c.i < len(c.in) {
		switch c.in[c.i] {
		case ' ', '\t', '\n', '\r':
			c.i++
		default:
			return
		}
	}
}

func (c *canonicalizer) value(depth int) error {
	if c.i >= len(c.in) || depth > maxDepth {
		return errSyntax
	}
	switch b := c.in[c.i]; {
	case b == '{':
		return c.object(depth)
	case b == '[':
		return c.array(depth)
	case b == '"':
		return c.str()
	case b == '-' || '0' <= b && b <= '9':
		return c.number()
	case b == 't':
		return c.literal("true")
	case b == 'f':
		return c.literal("false")
	case b == 'n':
		return c.literal("null")
	}
	return errSyntax
}

func (c *canonicalizer) literal(lit string) error {
	if !bytes.HasPrefix(c.in[c.i:], []byte(lit)) {
		return errSyntax
	}
	c.i += len(lit)
	c.out = append(c.out, lit...)
	return nil
}

// number copies a number as written, after checking JSON's grammar:
// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?. 1 and 1.0 stay apart:
// an upstream may read them differently (an integer field refuses 1.0).
func (c *canonicalizer) number() error {
	start := c.i
	if c.in[c.i] == '-' {
		c.i++
	}
	switch {
	case c.i < len(c.in) && c.in[c.i] == '0':
		c.i++
	case c.digits() == 0:
		return errSyntax
	}
	if c.i < len(c.in) && c.in[c.i] == '.' {
		c.i++
		if c.digits() == 0 {
			return errSyntax
		}
	}
	if c.i < len(c.in) && (c.in[c.i] == 'e' || c.in[c.i] == 'E') {
		c.i++
		if c.i < len(c.in) && (c.in[c.i] == '+' || c.in[c.i] == '-') {
			c.i++
		}
		if c.digits() == 0 {
			return errSyntax
		}
	}
	c.out = append(c.out, c.in[start:c.i]...)
	return nil
}

func (c *canonicalizer) digits() int {
	start := c.i
	for c.i < len(c.in) && '0' <= c.in[c.i] && c.in[c.i] <= '9' {
		c.i++
	}
	return c.i - start
}

// str writes a string: as written when that is already its canonical
// spelling (no escape, no control character, valid UTF-8: most strings),
// else decoded and written again with the fewest escapes.
func (c *canonicalizer) str() error {
	start := c.i
	plain := true
	c.i++
	for {
		if c.i >= len(c.in) {
			return errSyntax
		}
		b := c.in[c.i]
		switch {
		case b == '"':
			c.i++
			raw := c.in[start:c.i]
			if plain && utf8.Valid(raw) {
				c.out = append(c.out, raw...)
				return nil
			}
			var s string
			if json.Unmarshal(raw, &s) != nil {
				return errSyntax
			}
			c.out = appendString(c.out, s)
			return nil
		case b == '\\':
			plain = false
			c.i += 2
		case b < 0x20:
			return errSyntax
		default:
			c.i++
		}
	}
}

// appendString writes s as a JSON string escaping only what must be: the
// quote, the backslash and control characters. s is valid UTF-8 (it comes
// out of encoding/json, which replaces invalid bytes).
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == '"' || ch == '\\':
			b = append(b, '\\', ch)
		case ch < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[ch>>4], hex[ch&0xf])
		default:
			b = append(b, ch)
		}
	}
	return append(b, '"')
}

func (c *canonicalizer) array(depth int) error {
	c.i++
	c.out = append(c.out, '[')
	c.space()
	if c.i < len(c.in) && c.in[c.i] == ']' {
		c.i++
		c.out = append(c.out, ']')
		return nil
	}
	for {
		c.space()
		if err := c.value(depth + 1); err != nil {
			return err
		}
		c.space()
		if c.i >= len(c.in) {
			return errSyntax
		}
		switch c.in[c.i] {
		case ',':
			c.i++
			c.out = append(c.out, ',')
		case ']':
			c.i++
			c.out = append(c.out, ']')
			return nil
		default:
			return errSyntax
		}
	}
}

func (c *canonicalizer) object(depth int) error {
	c.i++
	start := len(c.out)
	c.out = append(c.out, '{')
	base := len(c.spans)
	c.space()
	if c.i < len(c.in) && c.in[c.i] == '}' {
		c.i++
		c.out = append(c.out, '}')
		return nil
	}
	for {
		c.space()
		if c.i >= len(c.in) || c.in[c.i] != '"' {
			return errSyntax
		}
		key := len(c.out)
		if err := c.str(); err != nil {
			return err
		}
		colon := len(c.out)
		c.space()
		if c.i >= len(c.in) || c.in[c.i] != ':' {
			return errSyntax
		}
		c.i++
		c.out = append(c.out, ':')
		c.space()
		if err := c.value(depth + 1); err != nil {
			return err
		}
		c.spans = append(c.spans, span{key: key, colon: colon, end: len(c.out)})
		c.space()
		if c.i >= len(c.in) {
			return errSyntax
		}
		if c.in[c.i] == ',' {
			c.i++
			c.out = append(c.out, ',')
			continue
		}
		if c.in[c.i] != '}' {
			return errSyntax
		}
		c.i++
		break
	}
	members := c.order(start, c.spans[base:])
	if depth == 0 {
		c.top = append(c.top, members...)
	}
	c.out = append(c.out, '}')
	c.spans = c.spans[:base]
	return nil
}

// order sorts the members of the object that starts at out[start] (its
// '{', members written after it, no '}' yet) by key, keeping the last of
// each repeated key, and returns them as they are then. Most objects come
// sorted already, or nearly: only an object that is not is copied.
func (c *canonicalizer) order(start int, members []span) []span {
	sorted := true
	for j := 1; j < len(members); j++ {
		if bytes.Compare(c.out[members[j-1].key:members[j-1].colon], c.out[members[j].key:members[j].colon]) >= 0 {
			sorted = false
			break
		}
	}
	if sorted {
		return members
	}
	c.tmp = append(c.tmp[:0], c.out[start:]...)
	key := func(s span) []byte { return c.tmp[s.key-start : s.colon-start] }
	// Stable: among equal keys the last written stays last.
	slices.SortStableFunc(members, func(a, b span) int { return bytes.Compare(key(a), key(b)) })
	c.out = c.out[:start+1]
	kept := members[:0]
	for j, m := range members {
		if j+1 < len(members) && bytes.Equal(key(m), key(members[j+1])) {
			continue
		}
		if len(kept) > 0 {
			c.out = append(c.out, ',')
		}
		at := len(c.out)
		c.out = append(c.out, c.tmp[m.key-start:m.end-start]...)
		kept = append(kept, span{key: at, colon: at + m.colon - m.key, end: len(c.out)})
	}
	return kept
}

// member is the i-th member of the value, an object, in canonical order:
// its key as written, quotes included, and its value.
func (c *canonicalizer) member(i int) (key, value []byte) {
	m := c.top[i]
	return c.out[m.key:m.colon], c.out[m.colon+1 : m.end]
}

// lookup is the value of the value's member whose key as written
// (quotes included) is key.
func (c *canonicalizer) lookup(key string) ([]byte, bool) {
	for i := range c.top {
		if k, v := c.member(i); string(k) == key {
			return v, true
		}
	}
	return nil, false
}
