package celrule_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/celrule"
)

func TestCompileAndEval(t *testing.T) {
	t.Parallel()
	env, err := celrule.NewEnv(celrule.Var{Name: "value", Type: celrule.Type{Kind: celrule.Int}})
	require.NoError(t, err)
	prg, err := env.Compile("value >= 18 && value < 130")
	require.NoError(t, err)
	ok, err := prg.Eval(context.Background(), map[string]any{"value": int64(40)})
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = prg.Eval(context.Background(), map[string]any{"value": int64(3)})
	require.NoError(t, err)
	require.False(t, ok)

	for expr, want := range map[string]string{
		"value >=":              "does not compile",
		`value.startsWith("a")`: "does not compile", // an int has no startsWith
		"value + 1":             "must be a boolean expression, not int",
		"  ":                    "empty",
	} {
		_, err := env.Compile(expr)
		var ce *celrule.CompileError
		require.True(t, errors.As(err, &ce), expr)
		require.Contains(t, ce.Problem, want, expr)
	}
}

// TestCostLimit: an expression that would do millions of steps stops at
// the cost limit instead of holding the worker.
func TestCostLimit(t *testing.T) {
	t.Parallel()
	elem := celrule.Type{Kind: celrule.Int}
	env, err := celrule.NewEnv(celrule.Var{Name: "value", Type: celrule.Type{Kind: celrule.List, Elem: &elem}})
	require.NoError(t, err)
	prg, err := env.Compile("value.all(x, value.all(y, value.all(z, x + y + z >= 0)))")
	require.NoError(t, err)
	list := make([]any, 300)
	for i := range list {
		list[i] = int64(i)
	}
	_, err = prg.Eval(context.Background(), map[string]any{"value": list})
	require.Error(t, err)
	require.Contains(t, err.Error(), "cost limit")
}

// TestDeadline: an evaluation stops when its context ends.
func TestDeadline(t *testing.T) {
	t.Parallel()
	elem := celrule.Type{Kind: celrule.Int}
	env, err := celrule.NewEnv(celrule.Var{Name: "value", Type: celrule.Type{Kind: celrule.List, Elem: &elem}})
	require.NoError(t, err)
	prg, err := env.Compile("value.all(x, x >= 0)")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	list := make([]any, 1000)
	for i := range list {
		list[i] = int64(i)
	}
	_, err = prg.Eval(ctx, map[string]any{"value": list})
	require.Error(t, err)
}
