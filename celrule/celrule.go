// Package celrule is the one place where Bud runs CEL: custom validation
// rules a model wrote from a sentence, and evaluation checks an author
// wrote. CEL is not a general-purpose language (no I/O, no unbounded
// loops), and every program this package builds carries a cost limit and
// runs under a deadline, so an expression, whoever wrote it, can neither
// reach outside its inputs nor hold a worker. Nothing else in Bud builds a
// CEL program or evaluates one; a test of this package walks the module's
// source to keep it so.
package celrule

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"
)

// Limits of every program.
const (
	// CostLimit bounds the cost CEL counts while it evaluates one program
	// (about one unit per operation and per element a function touches).
	CostLimit = 1_000_000
	// EvalTimeout bounds the wall time of one evaluation.
	EvalTimeout = 100 * time.Millisecond
	// MaxExpressionLen bounds the text of an expression.
	MaxExpressionLen = 4000
	// interruptEvery is how many comprehension steps pass between checks of
	// the deadline.
	interruptEvery = 100
)

// Kind is a CEL type a variable is declared with.
type Kind string

// Kinds.
const (
	String Kind = "string"
	Int    Kind = "int"
	Double Kind = "double"
	Bool   Kind = "bool"
	List   Kind = "list" // of Elem
	Map    Kind = "map"  // string keys, values of any type
	Dyn    Kind = "dyn"
)

// Type is the declared type of a variable: a kind, and for a list the type
// of its elements.
type Type struct {
	Kind Kind
	Elem *Type
}

// String renders the type as CEL writes it.
func (t Type) String() string {
	switch t.Kind {
	case List:
		if t.Elem == nil {
			return "list(dyn)"
		}
		return "list(" + t.Elem.String() + ")"
	case Map:
		return "map(string, dyn)"
	case "":
		return "dyn"
	}
	return string(t.Kind)
}

func (t Type) cel() *cel.Type {
	switch t.Kind {
	case String:
		return cel.StringType
	case Int:
		return cel.IntType
	case Double:
		return cel.DoubleType
	case Bool:
		return cel.BoolType
	case List:
		if t.Elem == nil {
			return cel.ListType(cel.DynType)
		}
		return cel.ListType(t.Elem.cel())
	case Map:
		return cel.MapType(cel.StringType, cel.DynType)
	}
	return cel.DynType
}

// Var is a variable an expression may use.
type Var struct {
	Name string
	Type Type
}

// Env declares the variables of a family of expressions. It is safe for
// concurrent use.
type Env struct {
	env *cel.Env
}

// NewEnv returns an environment with vars declared, CEL's standard library,
// its string extensions, and comparisons across int and double.
func NewEnv(vars ...Var) (*Env, error) {
	opts := []cel.EnvOption{cel.CrossTypeNumericComparisons(true), ext.Strings()}
	for _, v := range vars {
		opts = append(opts, cel.Variable(v.Name, v.Type.cel()))
	}
	env, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, fmt.Errorf("celrule: environment: %w", err)
	}
	return &Env{env: env}, nil
}

// CompileError says why an expression does not compile, in the compiler's
// words, on one line: fit to show an author or send back to a model.
type CompileError struct{ Problem string }

// Error implements error.
func (e *CompileError) Error() string { return e.Problem }

// Program is a compiled boolean expression, ready to run with its limits.
// It is safe for concurrent use.
type Program struct {
	prg  cel.Program
	text string
}

// Compile compiles a boolean expression. Its problems (empty, too long, a
// syntax or type error, a result that is not a boolean) are a
// *CompileError.
func (e *Env) Compile(expr string) (*Program, error) {
	switch {
	case strings.TrimSpace(expr) == "":
		return nil, &CompileError{Problem: "the expression is empty"}
	case len(expr) > MaxExpressionLen:
		return nil, &CompileError{Problem: fmt.Sprintf("the expression is longer than %d characters", MaxExpressionLen)}
	}
	ast, iss := e.env.Compile(expr)
	if iss.Err() != nil {
		return nil, &CompileError{Problem: "does not compile: " + strings.Join(strings.Fields(iss.Err().Error()), " ")}
	}
	if t := ast.OutputType(); !t.IsExactType(types.BoolType) && !t.IsExactType(types.DynType) {
		return nil, &CompileError{Problem: fmt.Sprintf("must be a boolean expression, not %s", t)}
	}
	prg, err := e.env.Program(ast,
		cel.CostLimit(CostLimit),
		cel.InterruptCheckFrequency(interruptEvery),
	)
	if err != nil {
		return nil, &CompileError{Problem: "does not compile: " + err.Error()}
	}
	return &Program{prg: prg, text: expr}, nil
}

// Expression is the program's source text.
func (p *Program) Expression() string { return p.text }

// ErrNotBool is an expression that gave something other than a boolean.
var ErrNotBool = errors.New("the expression did not give a boolean")

// Eval runs the program over vars (JSON-like Go values: maps, slices,
// strings, bools, int64, float64, nil) within CostLimit and EvalTimeout
// (or ctx's deadline, when sooner). An error is an expression that could
// not finish: over its limits, a missing key, a bad conversion, not a
// boolean.
func (p *Program) Eval(ctx context.Context, vars map[string]any) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, EvalTimeout)
	defer cancel()
	out, _, err := p.prg.ContextEval(ctx, vars)
	if err != nil {
		return false, fmt.Errorf("celrule: %w", err)
	}
	return asBool(out)
}

func asBool(v ref.Val) (bool, error) {
	b, ok := v.(types.Bool)
	if !ok {
		return false, fmt.Errorf("%w: it gave %s", ErrNotBool, v.Type().TypeName())
	}
	return bool(b), nil
}
