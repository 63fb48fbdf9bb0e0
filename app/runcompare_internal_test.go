package app

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/prompt"
	"github.com/budhq/bud/run"
)

func TestWordTokens(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{"Ada", " ", "wrote", "  ", "the", " ", "first", " ", "program", ",", " ", "in", " ", "1843", ".", "\n"},
		wordTokens("Ada wrote  the first program, in 1843.\n"))
	require.Equal(t, []string{"{", `"`, "summary", `"`, ":", `"`, "Ça", " ", "va", `"`, "}"}, wordTokens(`{"summary":"Ça va"}`))
	require.Empty(t, wordTokens(""))
}

// sidesOf rebuilds the two texts a word diff compares.
func sidesOf(changes []TextChange) (before, after string) {
	for _, c := range changes {
		if c.Op != TextInsert {
			before += c.Text
		}
		if c.Op != TextDelete {
			after += c.Text
		}
	}
	return before, after
}

func TestWordDiff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		want []TextChange
	}{
		{"Ada wrote the first program.", "Ada wrote the first published program.",
			[]TextChange{{TextEqual, "Ada wrote the first "}, {TextInsert, "published "}, {TextEqual, "program."}}},
		{"the cat sat", "the dog sat",
			[]TextChange{{TextEqual, "the "}, {TextDelete, "cat"}, {TextInsert, "dog"}, {TextEqual, " sat"}}},
		{"", "hello", []TextChange{{TextInsert, "hello"}}},
		{"same", "same", []TextChange{{TextEqual, "same"}}},
		{"", "", []TextChange{}},
	} {
		got := wordDiff(tc.a, tc.b)
		require.Equal(t, tc.want, got, "%q → %q", tc.a, tc.b)
	}

	// Words are never split, and the two sides always rebuild the texts,
	// whatever runes a token is coded as (past the surrogates, too).
	var a, b strings.Builder
	for i := range 60000 {
		w := "w" + strconv.Itoa(i) + " "
		a.WriteString(w)
		if i%5000 == 0 {
			b.WriteString("inserted ")
		}
		b.WriteString(w)
	}
	got := wordDiff(a.String(), b.String())
	before, after := sidesOf(got)
	require.Equal(t, a.String(), before)
	require.Equal(t, b.String(), after)
	var inserted int
	for _, c := range got {
		require.NotEqual(t, TextDelete, c.Op)
		if c.Op == TextInsert {
			require.Equal(t, "inserted", strings.TrimSpace(c.Text))
			inserted++
		}
	}
	require.Equal(t, 12, inserted)
	for i := range 200000 {
		require.Equal(t, i, tokenIndex(tokenRune(i)))
		require.False(t, tokenRune(i) >= 0xD800 && tokenRune(i) < 0xE000, "rune %x is a surrogate", tokenRune(i))
	}
}

func TestJSONChanges(t *testing.T) {
	t.Parallel()
	// Numbers stay as written, an integer past 2^53 included.
	changes, err := jsonChanges([]byte(`{"seed": 9007199254740993, "t": 0.5}`), []byte(`{"seed": 9007199254740995, "t": 0.5}`))
	require.NoError(t, err)
	require.Len(t, changes, 1)
	require.Equal(t, "/seed", changes[0].Path)
	require.Equal(t, "9007199254740995", string(*changes[0].Value))
	require.Equal(t, "9007199254740993", string(*changes[0].OldValue))

	// Arrays too long for a common-subsequence table are compared index by
	// index instead: still a correct patch, without the table.
	long := func(insertAt int) []byte {
		var sb strings.Builder
		sb.WriteString("[")
		for i := range 5000 {
			if i > 0 {
				sb.WriteString(",")
			}
			if i == insertAt {
				sb.WriteString(`"new",`)
			}
			sb.WriteString(strconv.Itoa(i))
		}
		sb.WriteString("]")
		return []byte(sb.String())
	}
	changes, err = jsonChanges(long(-1), long(4998))
	require.NoError(t, err)
	require.Len(t, changes, 3, "replace at 4998 and 4999, add at the end")
	short, err := jsonChanges([]byte(`[1, 2, 3]`), []byte(`[1, "new", 2, 3]`))
	require.NoError(t, err)
	require.Len(t, short, 1)
	require.Equal(t, "add", short[0].Op)
	require.Equal(t, "/1", short[0].Path)
}

// TestRunValidation: what a run's validation says from its record, with
// and without its document.
func TestRunValidation(t *testing.T) {
	t.Parallel()
	parse := func(output string) *prompt.Document {
		doc, err := prompt.Parse([]byte(`{"deployment": "d", "messages": [{"role": "user", "content": "{{ input }}"}]` + output + `}`))
		require.NoError(t, err)
		return doc
	}
	structured := parse(`, "output": {"type": "structured", "variables": [{"name": "summary", "type": "string"}]}`)
	text := parse("")
	require.True(t, structured.Output.Structured())
	require.False(t, text.Output.Structured())
	row := func(status, code string) dbsqlc.Run {
		r := dbsqlc.Run{Status: status}
		if code != "" {
			r.Error = json.RawMessage(`{"code": "` + code + `", "message": "` + code + ` happened"}`)
		}
		return r
	}
	parsed := json.RawMessage(`{"summary": "s"}`)
	for _, tc := range []struct {
		name    string
		doc     *prompt.Document
		row     dbsqlc.Run
		parsed  json.RawMessage
		want    string
		message string
	}{
		{"parsed output", nil, row(run.StatusCompleted, ""), parsed, validationPassed, ""},
		{"invalid output", nil, row(run.StatusFailed, run.InvalidOutput), nil, validationFailed, "InvalidOutput happened"},
		{"step limit, no document", nil, row(run.StatusFailed, run.StepLimit), nil, validationUnknown, "model call limit"},
		{"completed text, no document", nil, row(run.StatusCompleted, ""), nil, validationNotApplicable, ""},
		{"other failure, no document", nil, row(run.StatusFailed, run.UpstreamUnavailable), nil, validationUnknown, "unavailable"},
		{"step limit, structured", structured, row(run.StatusFailed, run.StepLimit), nil, validationFailed, "StepLimit happened"},
		{"step limit, text", text, row(run.StatusFailed, run.StepLimit), nil, validationNotApplicable, ""},
		{"completed text", text, row(run.StatusCompleted, ""), nil, validationNotApplicable, ""},
	} {
		got := runValidation(tc.doc, tc.row, tc.parsed)
		require.Equal(t, tc.want, got.Status, tc.name)
		if tc.message == "" {
			require.Empty(t, got.Message, tc.name)
		} else {
			require.Contains(t, got.Message, tc.message, tc.name)
		}
	}
}
