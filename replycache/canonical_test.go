package replycache

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func canonicalOf(t *testing.T, in string) string {
	t.Helper()
	var c canonicalizer
	require.NoError(t, c.canonical([]byte(in)), in)
	return string(c.out)
}

func TestCanonical(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		` { "b" : [ 1 , 2.50 , -0 , 1e+3 ] , "a" : { "y" : null , "x" : true } } `: `{"a":{"x":true,"y":null},"b":[1,2.50,-0,1e+3]}`,
		`{"a":1,"a":2,"b":3,"a":4}`: `{"a":4,"b":3}`,
		`{"\u0061":1,"a":2}`:        `{"a":2}`,
		`"\u00e9\/\"\\\n"`:          `"é/\"\\\u000a"`,
		`"é"`:                       `"é"`,
		"\"\xff\"":                  "\"\ufffd\"",
		`{}`:                        `{}`,
		`[]`:                        `[]`,
		`[{}, [], ""]`:              `[{},[],""]`,
		`{"b":{"d":1,"c":2},"a":[{"z":0,"y":1}]}`: `{"a":[{"y":1,"z":0}],"b":{"c":2,"d":1}}`,
	} {
		require.Equal(t, want, canonicalOf(t, in), in)
	}
}

// FuzzCanonical: canonical accepts exactly what encoding/json accepts,
// writes valid JSON of the same value, and is its own fixed point.
func FuzzCanonical(f *testing.F) {
	for _, seed := range []string{
		`{"model":"m","messages":[{"role":"user","content":"Hi"}],"temperature":0.2}`,
		`{"a":1,"a":{"b":[1,2,{"c":"\u00e9"}]},"A":true}`,
		`[1, -0.5e-3, "x\ny", null, false]`,
		`{"\ud83d\ude00":"\ud800"}`,
		`{"a":01}`, `{"a" 1}`, `[1,]`, `{"a":1,}`, `"\x"`, `tru`, `-`, `1.`, `1e`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var c canonicalizer
		err := c.canonical([]byte(in))
		if !json.Valid([]byte(in)) {
			if err == nil {
				t.Fatalf("accepted invalid JSON %q as %q", in, c.out)
			}
			return
		}
		if err != nil {
			t.Fatalf("refused valid JSON %q: %v", in, err)
		}
		out := string(c.out)
		if !json.Valid([]byte(out)) {
			t.Fatalf("%q canonical %q is not JSON", in, out)
		}
		var a, b any
		if json.Unmarshal([]byte(in), &a) != nil || json.Unmarshal([]byte(out), &b) != nil {
			// Numbers out of float64's range: both fail alike or neither.
			return
		}
		require.Equal(t, a, b, "%q and its canonical %q differ", in, out)
		if out[0] == '{' {
			// The members the keys are read from are the object's own.
			joined := []byte{'{'}
			for i := range c.top {
				if i > 0 {
					joined = append(joined, ',')
				}
				k, v := c.member(i)
				joined = append(append(append(joined, k...), ':'), v...)
			}
			require.Equal(t, out, string(append(joined, '}')))
		}
		var again canonicalizer
		require.NoError(t, again.canonical(c.out))
		require.Equal(t, out, string(again.out), "canonical is not a fixed point")
	})
}
