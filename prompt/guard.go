package prompt

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/nikolalohinski/gonja/v2/builtins"
	controlStructures "github.com/nikolalohinski/gonja/v2/builtins/control_structures"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/nodes"
	"github.com/nikolalohinski/gonja/v2/tokens"
)

// Limits of the template sandbox. A template is written by a project member
// but rendered by a shared worker, so no template may take the worker's
// memory or time, whatever its input.
const (
	// MaxTemplateBytes bounds the source of one template.
	MaxTemplateBytes = 100 << 10
	// MaxRenderBytes bounds the text of all rendered messages of one run.
	MaxRenderBytes = 1 << 20
	// MaxValueBytes bounds any one value a template builds (a string, a
	// list): checked before "x" * n is computed and after every filter.
	MaxValueBytes = 1 << 20
	// MaxWorkBytes bounds all text produced during one Render, including
	// text captured by {% set %}…{% endset %} and {% filter %} blocks, which
	// never reaches the output.
	MaxWorkBytes = 4 << 20
	// MaxLoopIterations bounds the loop bodies run during one Render.
	MaxLoopIterations = 100_000
	// MaxRangeItems bounds what one range() call may produce.
	MaxRangeItems = 10_000
	// RenderTimeout bounds the time of one Render.
	RenderTimeout = time.Second
)

// ErrLimit is in the chain of every error that Render returns because a
// template broke one of the sandbox's limits.
var ErrLimit = errors.New("template limit exceeded")

// Names of the guards the sandbox inserts into a parsed template. They hold a
// colon, which a template cannot write in a filter name, so no template can
// call or shadow them.
const (
	guardOutput   = "bud:output"
	guardValue    = "bud:value"
	guardMultiply = "bud:multiply"
	budgetKey     = "bud:budget"
)

// guarder walks a parsed template once. It records the names the template
// reads and the names it defines (loop variables, {% set %} and {% with %}
// targets), and it installs the guards: a size and work check on every {{ }},
// a size check on the operands of + and ~ and after every filter, a safe
// replacement for *, and a budget tick at the top of every loop body.
//
// gonja offers no visitor that reaches into expressions and tags (nodes.Walk
// stops at the top level), and several tags keep their expressions in
// unexported fields, so the walk is by reflection, and writing a guard into
// such a field goes through unsafe. The nodes are the ones just parsed, owned
// by this package and not yet shared, and only fields of gonja's own node
// types are written, with values of their declared types.
type guarder struct {
	seen    map[uintptr]bool
	reads   map[string]bool
	defines map[string]bool
	err     error
}

var (
	tokenType        = reflect.TypeFor[tokens.Token]()
	expressionType   = reflect.TypeFor[nodes.Expression]()
	filterCallsType  = reflect.TypeFor[[]*nodes.FilterCall]()
	forType          = reflect.TypeFor[controlStructures.ForControlStructure]()
	setType          = reflect.TypeFor[controlStructures.SetControlStructure]()
	withType         = reflect.TypeFor[controlStructures.WithControlStructure]()
	filterBlockType  = reflect.TypeFor[controlStructures.FilterControlStructure]()
	nameType         = reflect.TypeFor[nodes.Name]()
	outputType       = reflect.TypeFor[nodes.Output]()
	binaryType       = reflect.TypeFor[nodes.BinaryExpression]()
	filteredExprType = reflect.TypeFor[nodes.FilteredExpression]()
	dataPtrType      = reflect.TypeFor[*nodes.Data]()
)

// writable returns v without the read-only mark reflect puts on values
// reached through unexported fields. v must be addressable.
func writable(v reflect.Value) reflect.Value {
	return reflect.NewAt(v.Type(), unsafe.Pointer(v.UnsafeAddr())).Elem()
}

func (g *guarder) walk(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() || g.seen[v.Pointer()] {
			return
		}
		g.seen[v.Pointer()] = true
		g.walk(v.Elem())
	case reflect.Interface:
		if v.IsNil() {
			return
		}
		e := v.Elem()
		if e.Kind() == reflect.Pointer {
			g.walk(e)
			return
		}
		// A node held by value: walk a copy; what it points to is shared.
		c := reflect.New(e.Type()).Elem()
		c.Set(e)
		g.walk(c)
	case reflect.Slice:
		for i := range v.Len() {
			g.walk(v.Index(i))
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			if e := it.Value(); e.Kind() == reflect.Pointer || e.Kind() == reflect.Interface {
				g.walk(e)
			}
		}
	case reflect.Struct:
		if v.Type() == tokenType || !v.CanAddr() {
			return
		}
		w := writable(v)
		for i := range w.NumField() {
			g.walk(w.Field(i))
		}
		g.visit(w)
	}
}

// visit looks at one node after its children.
func (g *guarder) visit(w reflect.Value) {
	switch w.Type() {
	case nameType:
		g.reads[w.Addr().Interface().(*nodes.Name).Name.Val] = true
	case outputType:
		o := w.Addr().Interface().(*nodes.Output)
		o.Expression = guarded(o.Expression, guardOutput)
		if o.Alternative != nil {
			o.Alternative = guarded(o.Alternative, guardOutput)
		}
	case binaryType:
		b := w.Addr().Interface().(*nodes.BinaryExpression)
		switch b.Operator.Token.Type {
		case tokens.Addition, tokens.Tilde:
			b.Left = guarded(b.Left, guardValue)
			b.Right = guarded(b.Right, guardValue)
		case tokens.Multiply:
			// gonja computes "x" * n with strings.Repeat before anything can
			// look at n, so the product is computed by the guard and the
			// expression becomes (guarded product) * 1, which is the product
			// unchanged for strings, integers and floats alike.
			tok := b.Left.Position()
			b.Left = &nodes.FilteredExpression{Expression: b.Left, Filters: []*nodes.FilterCall{
				{Token: tok, Name: guardMultiply, Args: []nodes.Expression{b.Right}, Kwargs: map[string]nodes.Expression{}},
			}}
			b.Right = &nodes.Integer{Location: &tokens.Token{Type: tokens.Integer, Val: "1", Line: tok.Line, Col: tok.Col}, Val: 1}
		}
	case filteredExprType:
		f := w.Addr().Interface().(*nodes.FilteredExpression)
		f.Filters = withValueChecks(f.Filters)
	case filterBlockType:
		for i := range w.NumField() {
			if f := writable(w.Field(i)); f.Type() == filterCallsType {
				f.Set(reflect.ValueOf(withValueChecks(f.Interface().([]*nodes.FilterCall))))
			}
		}
	case forType:
		f := w.Addr().Interface().(*controlStructures.ForControlStructure)
		if f.Recursive {
			g.err = errors.New("recursive loops are not supported in prompt templates")
			return
		}
		g.defines[f.Key] = true
		if f.Value != "" {
			g.defines[f.Value] = true
		}
		if f.BodyWrapper != nil {
			tick := &loopTick{location: f.BodyWrapper.Location, bodyBytes: textBytes(reflect.ValueOf(f.BodyWrapper))}
			if tick.location == nil {
				tick.location = &tokens.Token{}
			}
			f.BodyWrapper.Nodes = append([]nodes.Node{&nodes.ControlStructureBlock{
				Location: tick.location, Name: "loop budget", ControlStructure: tick,
			}}, f.BodyWrapper.Nodes...)
		}
	case setType:
		for i := range w.NumField() {
			if f := writable(w.Field(i)); f.Type() == expressionType && !f.IsNil() {
				if n, ok := f.Interface().(*nodes.Name); ok && w.Type().Field(i).Name == "target" {
					g.defines[n.Name.Val] = true
				}
			}
		}
	case withType:
		for i := range w.NumField() {
			if f := w.Field(i); f.Kind() == reflect.Map && f.Type().Key().Kind() == reflect.String {
				for _, k := range f.MapKeys() {
					g.defines[k.String()] = true
				}
			}
		}
	}
}

// guarded wraps e in a filter of the sandbox's.
func guarded(e nodes.Expression, guard string) nodes.Expression {
	return &nodes.FilteredExpression{Expression: e, Filters: []*nodes.FilterCall{
		{Token: e.Position(), Name: guard, Kwargs: map[string]nodes.Expression{}},
	}}
}

// withValueChecks puts a size check after each filter of a chain.
func withValueChecks(chain []*nodes.FilterCall) []*nodes.FilterCall {
	out := make([]*nodes.FilterCall, 0, 2*len(chain))
	for _, fc := range chain {
		out = append(out, fc)
		if !strings.HasPrefix(fc.Name, "bud:") {
			out = append(out, &nodes.FilterCall{Token: fc.Token, Name: guardValue, Kwargs: map[string]nodes.Expression{}})
		}
	}
	return out
}

// textBytes is the literal text under a node: what one run of a loop body
// writes even when it prints no variable.
func textBytes(v reflect.Value) int {
	seen := map[uintptr]bool{}
	var n int
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer:
			if v.IsNil() || seen[v.Pointer()] {
				return
			}
			seen[v.Pointer()] = true
			if v.Type() == dataPtrType {
				if tok := v.Elem().FieldByName("Data"); !tok.IsNil() {
					n += tok.Elem().FieldByName("Val").Len()
				}
				return
			}
			walk(v.Elem())
		case reflect.Interface:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Slice:
			for i := range v.Len() {
				walk(v.Index(i))
			}
		case reflect.Struct:
			if v.Type() == tokenType {
				return
			}
			for i := range v.NumField() {
				walk(v.Field(i))
			}
		}
	}
	walk(v)
	return n
}

// budget is what one Render may still spend. A render runs on one goroutine;
// only stop is touched from another.
type budget struct {
	deadline   time.Time
	stop       atomic.Bool
	out        int
	work       int
	iterations int
	err        error // the first limit broken
}

func (b *budget) fail(format string, args ...any) error {
	if b.err == nil {
		b.err = fmt.Errorf("%w: "+format, append([]any{ErrLimit}, args...)...)
	}
	return b.err
}

func (b *budget) check() error {
	if b.err != nil {
		return b.err
	}
	if b.stop.Load() || time.Now().After(b.deadline) {
		return b.fail("rendering took longer than %s", RenderTimeout)
	}
	return nil
}

func (b *budget) produce(n int) error {
	if err := b.check(); err != nil {
		return err
	}
	b.work += n
	if b.work > MaxWorkBytes {
		return b.fail("the templates produced more than %d bytes of text", MaxWorkBytes)
	}
	return nil
}

func budgetOf(ctx *exec.Context) *budget {
	v, _ := ctx.Get(budgetKey)
	b, _ := v.(*budget)
	return b
}

// loopTick runs at the top of every loop body.
type loopTick struct {
	location  *tokens.Token
	bodyBytes int
}

func (t *loopTick) Position() *tokens.Token { return t.location }
func (t *loopTick) String() string          { return "loop budget" }

// Execute counts one iteration and the text the body writes.
func (t *loopTick) Execute(r *exec.Renderer, _ *nodes.ControlStructureBlock) error {
	b := budgetOf(r.Environment.Context)
	if b == nil {
		return nil
	}
	b.iterations++
	if b.iterations > MaxLoopIterations {
		return b.fail("loops ran more than %d iterations", MaxLoopIterations)
	}
	return b.produce(t.bodyBytes)
}

// renderWriter collects one message and enforces the total output limit.
type renderWriter struct {
	b  *budget
	sb strings.Builder
}

func (w *renderWriter) Write(p []byte) (int, error) {
	if err := w.b.check(); err != nil {
		return 0, err
	}
	if w.b.out+len(p) > MaxRenderBytes {
		return 0, w.b.fail("the rendered messages exceed %d bytes", MaxRenderBytes)
	}
	w.b.out += len(p)
	return w.sb.Write(p)
}

// outputGuard runs on every {{ }}: the value must be of bounded size, and
// printing it counts against the work budget wherever the text goes.
func outputGuard(e *exec.Evaluator, in *exec.Value, _ *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	b := budgetOf(e.Environment.Context)
	if b == nil {
		return in
	}
	n, ok := valueSize(in.Interface(), MaxValueBytes)
	if !ok {
		return exec.AsValue(b.fail("a value is larger than %d bytes", MaxValueBytes))
	}
	if err := b.produce(n); err != nil {
		return exec.AsValue(err)
	}
	return in
}

// valueGuard checks a value's size: operands of + and ~, filter results.
func valueGuard(e *exec.Evaluator, in *exec.Value, _ *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	b := budgetOf(e.Environment.Context)
	if b == nil {
		return in
	}
	if err := b.check(); err != nil {
		return exec.AsValue(err)
	}
	if _, ok := valueSize(in.Interface(), MaxValueBytes); !ok {
		return exec.AsValue(b.fail("a value is larger than %d bytes", MaxValueBytes))
	}
	return in
}

// multiplyGuard computes left * right as gonja does, refusing a repeated
// string over the size limit before it is built.
func multiplyGuard(e *exec.Evaluator, left *exec.Value, params *exec.VarArgs) *exec.Value {
	if left.IsError() {
		return left
	}
	if len(params.Args) != 1 {
		return exec.AsValue(errors.New("multiply: missing operand"))
	}
	right := params.Args[0]
	if right.IsError() {
		return right
	}
	switch {
	case left.IsFloat() || right.IsFloat():
		return exec.AsValue(left.Float() * right.Float())
	case left.IsString():
		s, n := left.String(), right.Integer()
		if n <= 0 || s == "" {
			return exec.AsValue("")
		}
		if n > MaxValueBytes/len(s) {
			err := fmt.Errorf("%w: a string repeated %d times is larger than %d bytes", ErrLimit, n, MaxValueBytes)
			if b := budgetOf(e.Environment.Context); b != nil {
				err = b.fail("a string repeated %d times is larger than %d bytes", n, MaxValueBytes)
			}
			return exec.AsValue(err)
		}
		return exec.AsValue(strings.Repeat(s, n))
	}
	return exec.AsValue(left.Integer() * right.Integer())
}

// sandboxRange is range() with a bound, returning a list rather than gonja's
// channel, whose feeding goroutine would never end if a loop stopped early.
func sandboxRange(e *exec.Evaluator, params *exec.VarArgs) ([]int, error) {
	var start, stop, step = 0, 0, 1
	ints := make([]int, len(params.Args))
	for i, a := range params.Args {
		if !a.IsInteger() {
			return nil, errors.New("range() takes integers: range([start, ]stop[, step])")
		}
		ints[i] = a.Integer()
	}
	switch len(ints) {
	case 1:
		stop = ints[0]
	case 2:
		start, stop = ints[0], ints[1]
	case 3:
		start, stop, step = ints[0], ints[1], ints[2]
	default:
		return nil, errors.New("range() takes integers: range([start, ]stop[, step])")
	}
	if step == 0 {
		return nil, errors.New("range() step must not be zero")
	}
	var n int64
	if step > 0 && stop > start {
		n = (int64(stop) - int64(start) + int64(step) - 1) / int64(step)
	} else if step < 0 && stop < start {
		n = (int64(start) - int64(stop) - int64(step) - 1) / -int64(step)
	}
	if n > MaxRangeItems {
		err := fmt.Errorf("%w: range() of %d items is over the limit of %d", ErrLimit, n, MaxRangeItems)
		if b := budgetOf(e.Environment.Context); b != nil {
			err = b.fail("range() of %d items is over the limit of %d", n, MaxRangeItems)
		}
		return nil, err
	}
	out := make([]int, 0, n)
	for i := start; (step > 0 && i < stop) || (step < 0 && i > stop); i += step {
		out = append(out, i)
	}
	return out, nil
}

// valueSize estimates the printed size of v — string bytes plus one per
// element — stopping as soon as it passes limit, so that a list holding
// itself many times over is measured in bounded time.
func valueSize(v any, limit int) (int, bool) {
	s := sizer{limit: limit}
	s.add(reflect.ValueOf(v))
	return s.n, s.n <= limit
}

type sizer struct{ n, limit int }

var (
	execValueType    = reflect.TypeFor[exec.Value]()
	reflectValueType = reflect.TypeFor[reflect.Value]()
)

func (s *sizer) add(v reflect.Value) {
	if s.n > s.limit || !v.IsValid() {
		return
	}
	s.n++
	switch v.Kind() {
	case reflect.String:
		s.n += v.Len()
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			s.n += v.Len()
			return
		}
		for i := 0; i < v.Len() && s.n <= s.limit; i++ {
			s.add(v.Index(i))
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() && s.n <= s.limit {
			s.add(it.Key())
			s.add(it.Value())
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			s.add(v.Elem())
		}
	case reflect.Struct:
		switch {
		case v.Type() == execValueType && v.CanInterface():
			s.add(v.Interface().(exec.Value).Val)
		case v.Type() == reflectValueType && v.CanInterface():
			s.add(v.Interface().(reflect.Value))
		}
	}
}

// filterCheck refuses, before the named filter runs, the arguments that
// would make it build something far larger than its input.
func filterCheck(name string) func(in *exec.Value, p *exec.VarArgs) error {
	switch name {
	case "center":
		return func(in *exec.Value, p *exec.VarArgs) error {
			return maxInt("center width", arg(p, 0, "width"), MaxValueBytes)
		}
	case "indent":
		return func(in *exec.Value, p *exec.VarArgs) error {
			w := arg(p, 0, "width")
			per := 4
			if w != nil {
				per = sizeOf(w)
				if w.IsInteger() {
					per = w.Integer()
				}
			}
			lines := strings.Count(in.String(), "\n") + 1
			return maxProduct("indent", per, lines, len(in.String()))
		}
	case "join":
		return func(in *exec.Value, p *exec.VarArgs) error {
			sep := arg(p, 0, "d")
			if sep == nil {
				return nil
			}
			return maxProduct("join", sizeOf(sep), in.Len(), sizeOf(in))
		}
	case "replace":
		return func(in *exec.Value, p *exec.VarArgs) error {
			return checkReplace(in.String(), arg(p, 0, "old"), arg(p, 1, "new"))
		}
	case "batch":
		return func(in *exec.Value, p *exec.VarArgs) error {
			return maxInt("batch size", arg(p, 0, "linecount"), MaxValueBytes)
		}
	case "slice":
		return func(in *exec.Value, p *exec.VarArgs) error {
			return maxInt("slice count", arg(p, 0, "slices"), MaxValueBytes)
		}
	case "tojson":
		return func(in *exec.Value, p *exec.VarArgs) error {
			return maxInt("tojson indent", arg(p, 0, "indent"), 8)
		}
	case "format":
		return func(in *exec.Value, p *exec.VarArgs) error {
			return checkFormat(in.String(), p)
		}
	}
	return func(*exec.Value, *exec.VarArgs) error { return nil }
}

func checkedFilter(orig exec.FilterFunction, check func(*exec.Value, *exec.VarArgs) error) exec.FilterFunction {
	return func(e *exec.Evaluator, in *exec.Value, p *exec.VarArgs) *exec.Value {
		if in.IsError() {
			return in
		}
		if err := check(in, p); err != nil {
			if b := budgetOf(e.Environment.Context); b != nil {
				return exec.AsValue(b.fail("%s", strings.TrimPrefix(err.Error(), ErrLimit.Error()+": ")))
			}
			return exec.AsValue(err)
		}
		return orig(e, in, p)
	}
}

// sandboxMethods are gonja's methods with the same guards: the padding and
// joining methods of strings are checked before they run, and every method's
// result is checked after.
func sandboxMethods() exec.Methods {
	str := map[string]exec.Method[string]{}
	for _, name := range []string{
		"capitalize", "capwords", "casefold", "center", "count", "encode", "endswith", "expandtabs",
		"find", "format", "format_map", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit",
		"islower", "isnumeric", "isprintable", "isspace", "istitle", "isupper", "join", "ljust",
		"lower", "lstrip", "partition", "removeprefix", "removesuffix", "replace", "rfind", "rjust",
		"rpartition", "rsplit", "rstrip", "split", "splitlines", "startswith", "strip", "swapcase",
		"title", "upper", "zfill",
	} {
		if m, ok := builtins.Methods.Str.Get(name); ok {
			str[name] = checkedMethod(m, strMethodCheck(name))
		}
	}
	list := map[string]exec.Method[[]any]{}
	for _, name := range []string{"append", "copy", "reverse"} {
		if m, ok := builtins.Methods.List.Get(name); ok {
			list[name] = checkedMethod(m, func(self []any, p *exec.VarArgs) error { return checkSizes(self, p) })
		}
	}
	dict := map[string]exec.Method[map[string]any]{}
	for _, name := range []string{"clear", "copy", "get", "items", "keys", "pop", "setdefault", "update", "values"} {
		if m, ok := builtins.Methods.Dict.Get(name); ok {
			dict[name] = checkedMethod(m, func(self map[string]any, p *exec.VarArgs) error { return checkSizes(self, p) })
		}
	}
	return exec.Methods{
		Bool:  builtins.Methods.Bool,
		Int:   builtins.Methods.Int,
		Float: builtins.Methods.Float,
		Str:   exec.NewMethodSet(str),
		List:  exec.NewMethodSet(list),
		Dict:  exec.NewMethodSet(dict),
	}
}

func strMethodCheck(name string) func(string, *exec.VarArgs) error {
	switch name {
	case "center", "ljust", "rjust", "zfill":
		return func(_ string, p *exec.VarArgs) error {
			return maxInt(name+" width", arg(p, 0, "width"), MaxValueBytes)
		}
	case "expandtabs":
		return func(s string, p *exec.VarArgs) error {
			size := 8
			if a := arg(p, 0, "tabsize"); a != nil && a.IsInteger() {
				size = a.Integer()
			}
			return maxProduct("expandtabs", size, strings.Count(s, "\t"), len(s))
		}
	case "format", "format_map":
		return func(s string, p *exec.VarArgs) error { return checkFormat(s, p) }
	case "join":
		return func(s string, p *exec.VarArgs) error {
			a := arg(p, 0, "iterable")
			if a == nil {
				return nil
			}
			return maxProduct("join", len(s), a.Len(), sizeOf(a))
		}
	case "replace":
		return func(s string, p *exec.VarArgs) error { return checkReplace(s, arg(p, 0, "old"), arg(p, 1, "new")) }
	}
	return func(string, *exec.VarArgs) error { return nil }
}

func checkedMethod[T any](orig exec.Method[T], check func(T, *exec.VarArgs) error) exec.Method[T] {
	return func(self T, selfValue *exec.Value, p *exec.VarArgs) (any, error) {
		if err := check(self, p); err != nil {
			return nil, err
		}
		out, err := orig(self, selfValue, p)
		if err != nil {
			return nil, err
		}
		if _, ok := valueSize(out, MaxValueBytes); !ok {
			return nil, fmt.Errorf("%w: a value is larger than %d bytes", ErrLimit, MaxValueBytes)
		}
		if selfValue != nil {
			if _, ok := valueSize(selfValue.Interface(), MaxValueBytes); !ok {
				return nil, fmt.Errorf("%w: a value is larger than %d bytes", ErrLimit, MaxValueBytes)
			}
		}
		return out, nil
	}
}

func checkSizes(self any, p *exec.VarArgs) error {
	n, _ := valueSize(self, MaxValueBytes)
	for _, a := range p.Args {
		n += sizeOf(a)
	}
	for _, a := range p.KwArgs {
		n += sizeOf(a)
	}
	if n > MaxValueBytes {
		return fmt.Errorf("%w: a value is larger than %d bytes", ErrLimit, MaxValueBytes)
	}
	return nil
}

// arg is the i-th positional argument or, failing that, the named one.
func arg(p *exec.VarArgs, i int, name string) *exec.Value {
	if p == nil {
		return nil
	}
	if i < len(p.Args) {
		return p.Args[i]
	}
	if v, ok := p.KwArgs[name]; ok {
		return v
	}
	return nil
}

func sizeOf(v *exec.Value) int {
	if v == nil {
		return 0
	}
	n, _ := valueSize(v.Interface(), MaxValueBytes)
	return n
}

func maxInt(what string, v *exec.Value, max int) error {
	if v != nil && v.IsInteger() && v.Integer() > max {
		return fmt.Errorf("%w: %s %d is over the limit of %d", ErrLimit, what, v.Integer(), max)
	}
	return nil
}

// maxProduct refuses an operation that would write per bytes count times on
// top of base bytes, when that passes the value limit.
func maxProduct(what string, per, count, base int) error {
	if per < 0 {
		per = 0
	}
	if count > 0 && per > (MaxValueBytes-base)/count {
		return fmt.Errorf("%w: %s would build a value larger than %d bytes", ErrLimit, what, MaxValueBytes)
	}
	return nil
}

func checkReplace(s string, old, repl *exec.Value) error {
	if old == nil || repl == nil {
		return nil
	}
	count := utf8.RuneCountInString(s) + 1
	if o := old.String(); o != "" {
		count = strings.Count(s, o)
	}
	return maxProduct("replace", len(repl.String()), count, len(s))
}

var digitRun = regexp.MustCompile(`[0-9]+`)

// checkFormat bounds the widths a format string asks for, its own digits and
// the integer arguments that may stand for widths alike.
func checkFormat(s string, p *exec.VarArgs) error {
	total := len(s)
	for _, d := range digitRun.FindAllString(s, -1) {
		n, err := strconv.Atoi(d)
		if err != nil || n > MaxValueBytes {
			return fmt.Errorf("%w: format width %s is over the limit of %d", ErrLimit, d, MaxValueBytes)
		}
		total += n
	}
	for _, a := range append(append([]*exec.Value{}, p.Args...), mapValues(p.KwArgs)...) {
		if a.IsInteger() {
			total += max(a.Integer(), 0)
		} else {
			total += sizeOf(a)
		}
		if total > MaxValueBytes {
			break
		}
	}
	if total > MaxValueBytes {
		return fmt.Errorf("%w: format would build a value larger than %d bytes", ErrLimit, MaxValueBytes)
	}
	return nil
}

func mapValues(m map[string]*exec.Value) []*exec.Value {
	out := make([]*exec.Value, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
