package gateway

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// members walks the top-level members of a JSON object without decoding
// it: each key as written (between its quotes, escapes kept) and each
// value's text (no surrounding whitespace). It costs no allocation, where
// decoding a request or a reply into a map costs one per member. It trusts
// its input: only a text json.Valid accepts, whose first byte is '{',
// may be walked.
type members struct {
	b []byte
	i int
}

// newMembers walks obj, which json.Valid accepts and which starts with '{'.
func newMembers(obj []byte) members { return members{b: obj, i: 1} }

// next returns the next member, or ok false after the last.
func (m *members) next() (key, value []byte, ok bool) {
	m.skipSpace()
	if m.i >= len(m.b) || m.b[m.i] != '"' {
		return nil, nil, false // '}': the end
	}
	end := stringEnd(m.b, m.i)
	key = m.b[m.i+1 : end-1]
	m.i = end
	m.skipSpace()
	m.i++ // ':'
	m.skipSpace()
	start := m.i
	m.i = valueEnd(m.b, m.i)
	value = m.b[start:m.i]
	m.skipSpace()
	if m.i < len(m.b) && m.b[m.i] == ',' {
		m.i++
	}
	return key, value, true
}

func (m *members) skipSpace() {
	for m.i < len(m.b) && isSpace(m.b[m.i]) {
		m.i++
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// stringEnd is the index just past the JSON string that starts at b[i].
func stringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// valueEnd is the index just past the JSON value that starts at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = stringEnd(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	default: // a number, true, false or null
		for ; i < len(b); i++ {
			switch c := b[i]; {
			case c == ',' || c == '}' || c == ']' || isSpace(c):
				return i
			}
		}
		return len(b)
	}
}

// plainString reports whether s, the text between a JSON string's quotes,
// is its own value: no escapes, only ASCII (encoding/json would replace
// invalid UTF-8).
func plainString(s []byte) bool {
	for _, c := range s {
		if c == '\\' || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// keyIs reports whether the key as written (between its quotes) decodes
// to name.
func keyIs(key []byte, name string) bool {
	if plainString(key) {
		return string(key) == name
	}
	return decodeKey(key) == name
}

// decodeKey is the string a key as written decodes to, as encoding/json
// decodes it. It allocates; keys that need it are rare.
func decodeKey(key []byte) string {
	if plainString(key) {
		return string(key)
	}
	q := make([]byte, 0, len(key)+2)
	q = append(append(append(q, '"'), key...), '"')
	var s string
	_ = json.Unmarshal(q, &s) // a key of a valid object always decodes
	return s
}

// keyFolds reports whether the key as written decodes to a string that
// equals name under Unicode case folding, as encoding/json matches a
// key to a struct field.
func keyFolds(key []byte, name string) bool {
	if plainString(key) {
		return len(key) == len(name) && strings.EqualFold(string(key), name)
	}
	return strings.EqualFold(decodeKey(key), name)
}

// jsonInt reads an integer as encoding/json reads one into an int64: a
// number literal without fraction or exponent, within int64.
func jsonInt(b []byte) (int64, bool) {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg, b = true, b[1:]
	}
	if len(b) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	switch {
	case !neg && n <= 1<<63-1:
		return int64(n), true
	case neg && n <= 1<<63:
		return -int64(n-1) - 1, true
	}
	return 0, false
}

// usage is the token count an upstream reports.
type usage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
}

// findUsage reads the "usage" of a reply or of a stream chunk's data as
// encoding/json would decode b into struct{Usage *usage}: ok only when b
// decodes without error and usage is an object, keys matched
// case-insensitively, the last of a repeated one winning. It reads only
// that member: a full decode of every reply would cost more than the rest
// of the request's handling.
func findUsage(b []byte) (usage, bool) {
	var u usage
	b = trimSpace(b)
	if len(b) == 0 || b[0] != '{' || !json.Valid(b) {
		return u, false
	}
	found := false
	top := newMembers(b)
	for {
		k, v, ok := top.next()
		if !ok {
			break
		}
		if !keyFolds(k, "usage") {
			continue
		}
		switch v[0] {
		case 'n': // null: no usage, unless a later one says otherwise
			found, u = false, usage{}
			continue
		case '{':
		default:
			return usage{}, false
		}
		if !found {
			found, u = true, usage{}
		}
		inner := newMembers(v)
		for {
			ik, iv, ok := inner.next()
			if !ok {
				break
			}
			var dst *int64
			switch {
			case keyFolds(ik, "prompt_tokens"):
				dst = &u.PromptTokens
			case keyFolds(ik, "completion_tokens"):
				dst = &u.CompletionTokens
			default:
				continue
			}
			if iv[0] == 'n' { // null leaves an int as it is
				continue
			}
			n, ok := jsonInt(iv)
			if !ok {
				return usage{}, false
			}
			*dst = n
		}
	}
	if !found {
		return usage{}, false
	}
	return u, true
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}
