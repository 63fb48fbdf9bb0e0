package celrule_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// celPackages are the cel-go packages whose Program, Eval or ContextEval
// run an expression.
var celPackages = []string{"github.com/google/cel-go/", "cel.dev/"}

// interpreters are packages that would run text as code; Bud imports none.
var interpreters = []string{
	"plugin",
	"github.com/dop251/goja",
	"github.com/robertkrimen/otto",
	"github.com/traefik/yaegi",
	"github.com/d5/tengo",
	"github.com/yuin/gopher-lua",
	"github.com/expr-lang/expr",
	"go.starlark.net",
}

// TestCELIsConfined walks the module's Go source: only this package may
// import cel-go (so only it builds and runs programs, every one with
// CostLimit and under a deadline, which the constructor below sets), no
// package imports an interpreter, and os/exec is used only by tests and
// by the packages that start Bud's own sidecar binaries.
func TestCELIsConfined(t *testing.T) {
	root := moduleRoot(t)
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "testdata" || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		dir := filepath.ToSlash(filepath.Dir(rel))
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			for _, c := range celPackages {
				if strings.HasPrefix(p, c) && dir != "celrule" {
					t.Errorf("%s imports %s: CEL is built and run only in package celrule", rel, p)
				}
			}
			for _, i := range interpreters {
				if p == i || strings.HasPrefix(p, i+"/") {
					t.Errorf("%s imports the interpreter %s", rel, p)
				}
			}
			if p == "os/exec" && !execAllowed[dir] && !strings.HasSuffix(rel, "_test.go") {
				t.Errorf("%s imports os/exec: only %v start processes, and only Bud's own binaries", rel, keys(execAllowed))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// execAllowed are the directories whose code starts processes, each a
// fixed program of Bud's own: the Dapr sidecar, the MCP test server and
// the benchmark driver starting bud. Tests may too (they build and start
// bud); no package that handles a model's text is among them.
var execAllowed = map[string]bool{"daprd": true, "connection/mcpeverything": true, "cmd/budbench": true}

// TestProgramsHaveLimits parses celrule itself: every call that builds a
// program passes cel.CostLimit and cel.InterruptCheckFrequency, and every
// evaluation is a ContextEval (so the deadline applies).
func TestProgramsHaveLimits(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "celrule.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	programs, evals := 0, 0
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		switch sel.Sel.Name {
		case "Program":
			programs++
			var opts []string
			for _, a := range call.Args[1:] {
				if c, ok := a.(*ast.CallExpr); ok {
					if s, ok := c.Fun.(*ast.SelectorExpr); ok {
						opts = append(opts, s.Sel.Name)
					}
				}
			}
			joined := strings.Join(opts, ",")
			if !strings.Contains(joined, "CostLimit") || !strings.Contains(joined, "InterruptCheckFrequency") {
				t.Errorf("%s: a program built without CostLimit and InterruptCheckFrequency (%s)", fset.Position(call.Pos()), joined)
			}
		case "Eval":
			if _, ok := sel.X.(*ast.SelectorExpr); ok {
				t.Errorf("%s: Eval without a context; use ContextEval", fset.Position(call.Pos()))
			}
		case "ContextEval":
			evals++
		}
		return true
	})
	if programs != 1 || evals != 1 {
		t.Fatalf("celrule builds %d programs and evaluates %d times; the test knows one of each", programs, evals)
	}
}

func moduleRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test")
		}
		dir = parent
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
