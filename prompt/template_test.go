package prompt

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud"
)

// textPrompt is a text-input document whose one message is source.
func textPrompt(t *testing.T, source string) *Document {
	t.Helper()
	content, err := json.Marshal(source)
	require.NoError(t, err)
	return mustParse(t, `{"deployment": "qwen3-32b", "messages": [{"role": "user", "content": `+string(content)+`}]}`)
}

// TestSandboxRefusesLoading: no template can read a file or another
// template; saving such a prompt fails with a clear message.
func TestSandboxRefusesLoading(t *testing.T) {
	t.Parallel()
	for name, source := range map[string]string{
		"include a file":         `{% include "/etc/passwd" %}`,
		"include a template":     `{% include "other" %}`,
		"include by variable":    `{% include input %}`,
		"extends":                `{% extends "base.html" %}{% block body %}x{% endblock %}`,
		"import":                 `{% import "macros" as m %}{{ m.f() }}`,
		"from import":            `{% from "/etc/passwd" import root %}`,
		"include ignore missing": `{% include "/etc/hostname" ignore missing %}`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := textPrompt(t, source).Validate(project)
			msg := bud.ErrorFields(err)["messages[0].content"]
			require.Contains(t, msg, "is not allowed: a prompt's templates cannot load other templates", "%v", err)
			_, err = Compile(textPrompt(t, source))
			require.Error(t, err)
		})
	}
}

func TestSandboxRefusesRecursion(t *testing.T) {
	t.Parallel()
	for name, source := range map[string]string{
		"macro":          `{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}`,
		"call":           `{% call f() %}x{% endcall %}`,
		"recursive loop": `{% for x in [[1]] recursive %}{{ loop(x) }}{% endfor %}`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			msg := bud.ErrorFields(textPrompt(t, source).Validate(project))["messages[0].content"]
			require.Contains(t, msg, "not supported in prompt templates")
		})
	}
}

// TestSandboxLimits: templates that would run away are stopped with an
// error naming the limit, quickly.
func TestSandboxLimits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		source string
		want   string
		orWant string // on a slow machine (the race detector) time may run out first
	}{
		{"unbounded range", `{% for i in range(100000000) %}{{ i }}{% endfor %}`, "range() of 100000000 items is over the limit of 10000", ""},
		{"nested loops", `{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}`, "loops ran more than 100000 iterations", "rendering took longer than 1s"},
		{"string multiplication", `{{ "x" * 10000000000 }}`, "a string repeated 10000000000 times is larger than 1048576 bytes", ""},
		{"string multiplication in set", `{% set s = input * 10000000000 %}{{ s }}`, "larger than 1048576 bytes", ""},
		{"doubling", `{% set ns = namespace(s="ab") %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}`, "a value is larger than 1048576 bytes", ""},
		{"gigantic output", `{% for i in range(10000) %}{{ "y" * 1000 }}{% endfor %}`, "the rendered messages exceed 1048576 bytes", ""},
		{"captured output", `{% set b %}{% for i in range(10000) %}{{ "y" * 1000 }}{% endfor %}{% endset %}`, "the templates produced more than 4194304 bytes of text", ""},
		{"captured literal text", `{% filter upper %}{% for i in range(10000) %}` + strings.Repeat("z", 1000) + `{% endfor %}{% endfilter %}`, "the templates produced more than 4194304 bytes of text", ""},
		{"padding filter", `{{ input|center(10000000000) }}`, "center width 10000000000 is over the limit", ""},
		{"padding method", `{{ input.ljust(10000000000) }}`, "ljust width 10000000000 is over the limit", ""},
		{"format width", `{{ "{:>1000000000}".format(1) }}`, "format width 1000000000 is over the limit", ""},
		{"join amplification", `{{ range(10000)|join("x" * 1000) }}`, "join would build a value larger than 1048576 bytes", ""},
		{"replace amplification", `{{ ("x" * 1000)|replace("", "y" * 10000) }}`, "replace would build a value larger than 1048576 bytes", ""},
		{"slow render", `{% for i in range(10000) %}{% set s = range(10000)|map("string")|join(",") %}{% endfor %}`, "rendering took longer than 1s", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Compile(textPrompt(t, tc.source))
			require.NoError(t, err)
			start := time.Now()
			_, err = c.Render(map[string]any{"input": "hi"})
			require.Less(t, time.Since(start), RenderTimeout+time.Second)
			require.ErrorIs(t, err, ErrLimit)
			if tc.orWant == "" || !strings.Contains(err.Error(), tc.orWant) {
				require.Contains(t, err.Error(), tc.want)
			}
			var re *RenderError
			require.True(t, errors.As(err, &re))
			require.Equal(t, "messages[0].content", re.Field)
		})
	}
}

func TestSandboxRuntimeErrors(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ source, want string }{
		"division by zero": {`{{ 1 % 0 }}`, "integer divide by zero"},
		"negative repeat":  {`[{{ "x" * -1 }}]`, ""},
		"missing key":      {`{{ input.nothing.deeper }}`, "nothing"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, err := Compile(textPrompt(t, tc.source))
			require.NoError(t, err)
			msgs, err := c.Render(map[string]any{"input": "hi"})
			if tc.want == "" {
				require.NoError(t, err)
				require.Equal(t, "[]", msgs[0].Content)
				return
			}
			var re *RenderError
			require.True(t, errors.As(err, &re), "%v", err)
			require.Contains(t, err.Error(), tc.want)
			require.NotErrorIs(t, err, ErrLimit)
		})
	}
}

// TestSandboxNoEnvironment: nothing of the process is reachable by name.
func TestSandboxNoEnvironment(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"env", "environ", "os", "lipsum", "self", "gonja"} {
		err := textPrompt(t, "{{ "+name+" }}").Validate(project)
		if name == "self" {
			// self exists in gonja (it renders blocks, which are refused)
			// and prints nothing useful; it is allowed.
			require.NoError(t, err)
			continue
		}
		require.Contains(t, bud.ErrorFields(err)["messages[0].content"], "undefined variable", name)
	}
}
