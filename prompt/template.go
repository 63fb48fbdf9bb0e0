package prompt

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"github.com/nikolalohinski/gonja/v2/builtins"
	controlStructures "github.com/nikolalohinski/gonja/v2/builtins/control_structures"
	"github.com/nikolalohinski/gonja/v2/config"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/loaders"
	"github.com/nikolalohinski/gonja/v2/nodes"
	"github.com/nikolalohinski/gonja/v2/parser"
)

// isGlobalName reports whether a template may read name without defining
// it: the sandbox's functions and the names Jinja itself provides.
func isGlobalName(name string) bool {
	switch name {
	case "range", "dict", "cycler", "joiner", "namespace", "none", "loop", "self":
		return true
	}
	return false
}

// sandbox is a gonja environment of its own: strict about undefined names,
// unable to load any template but the one it parses, without the tags that
// load templates or recurse, and with guards on everything that can grow.
// It changes none of gonja's defaults; each Compile builds its own.
type sandbox struct {
	cfg *config.Config
	env *exec.Environment
}

func newSandbox() *sandbox {
	cfg := config.New()
	cfg.StrictUndefined = true

	globals := exec.NewContext(map[string]any{"range": sandboxRange, "none": nil})
	for _, name := range []string{"dict", "cycler", "joiner", "namespace"} {
		if fn, ok := builtins.GlobalFunctions.Get(name); ok {
			globals.Set(name, fn)
		}
	}

	filters := exec.NewFilterSet(map[string]exec.FilterFunction{}).Update(builtins.Filters)
	for _, name := range []string{"center", "indent", "join", "replace", "batch", "slice", "tojson", "format"} {
		if orig, ok := filters.Get(name); ok {
			_ = filters.Replace(name, checkedFilter(orig, filterCheck(name)))
		}
	}
	_ = filters.Register(guardOutput, outputGuard)
	_ = filters.Register(guardValue, valueGuard)
	_ = filters.Register(guardMultiply, multiplyGuard)

	structures := map[string]parser.ControlStructureParser{}
	for _, name := range []string{"autoescape", "break", "continue", "do", "filter", "for", "if", "raw", "set", "with"} {
		if p, ok := controlStructures.All.Get(name); ok {
			structures[name] = p
		}
	}
	for _, name := range []string{"include", "import", "from", "extends"} {
		structures[name] = refuseTag(name, "is not allowed: a prompt's templates cannot load other templates")
	}
	for _, name := range []string{"macro", "call", "block", "trans"} {
		structures[name] = refuseTag(name, "is not supported in prompt templates")
	}

	return &sandbox{cfg: cfg, env: &exec.Environment{
		Context:           globals,
		Filters:           filters,
		Tests:             exec.NewTestSet(map[string]exec.TestFunction{}).Update(builtins.Tests),
		ControlStructures: exec.NewControlStructureSet(structures),
		Methods:           sandboxMethods(),
	}}
}

func refuseTag(name, why string) parser.ControlStructureParser {
	return func(p *parser.Parser, args *parser.Parser) (nodes.ControlStructure, error) {
		return nil, args.Error(fmt.Sprintf("{%% %s %%} %s", name, why), p.Current())
	}
}

// template is one parsed, guarded template and the names it reads but does
// not define itself.
type template struct {
	tpl   *exec.Template
	reads []string
}

// parse parses source in the sandbox. Errors are the author's: they say what
// is wrong and where, and never include the source.
func (s *sandbox) parse(name, source string) (t *template, err error) {
	if len(source) > MaxTemplateBytes {
		return nil, fmt.Errorf("must be at most %d bytes", MaxTemplateBytes)
	}
	defer func() {
		// gonja's parser is not hardened against every input; a panic in it
		// is a template it cannot parse, not a reason to stop the process.
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("template error: cannot parse this template (%v)", r)
		}
	}()
	tpl, err := exec.NewTemplate(name, s.cfg, oneTemplate{name: name, source: source}, s.env)
	if err != nil {
		if inner := errors.Unwrap(err); inner != nil {
			err = inner // drop gonja's wrapper, which quotes the whole source
		}
		return nil, fmt.Errorf("template error: %w", err)
	}
	g := guarder{seen: map[uintptr]bool{}, reads: map[string]bool{}, defines: map[string]bool{}}
	g.walk(reflect.ValueOf(tpl.Root()).Elem())
	if g.err != nil {
		return nil, fmt.Errorf("template error: %w", g.err)
	}
	var reads []string
	for n := range g.reads {
		if !g.defines[n] && !isGlobalName(n) {
			reads = append(reads, n)
		}
	}
	return &template{tpl: tpl, reads: reads}, nil
}

// oneTemplate is the sandbox's loader: it serves the template being parsed
// and refuses every other name, so nothing on disk or elsewhere is reachable
// even if a loading tag were let through.
type oneTemplate struct{ name, source string }

func (o oneTemplate) Read(path string) (io.Reader, error) {
	if path != o.name {
		return nil, fmt.Errorf("cannot load %q: a prompt's templates cannot load other templates", path)
	}
	return strings.NewReader(o.source), nil
}

func (o oneTemplate) Resolve(path string) (string, error) {
	if path != o.name {
		return "", fmt.Errorf("cannot load %q: a prompt's templates cannot load other templates", path)
	}
	return path, nil
}

func (o oneTemplate) Inherit(from string) (loaders.Loader, error) {
	return nil, fmt.Errorf("cannot load %q: a prompt's templates cannot load other templates", from)
}

// render runs one template into w with vars and the budget b in its context.
func (t *template) render(w io.Writer, vars map[string]any, b *budget) error {
	data := make(map[string]any, len(vars)+1)
	for k, v := range vars {
		data[k] = v
	}
	data[budgetKey] = b
	return t.tpl.Execute(w, exec.NewContext(data))
}
