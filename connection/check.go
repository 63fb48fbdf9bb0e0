package connection

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/budhq/bud"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Methods an http operation may use.
var operationMethods = []string{"GET", "POST", "PUT", "PATCH", "DELETE"}

var (
	operationNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)
	placeholderPattern   = regexp.MustCompile(`\{([^{}]*)\}`)
	placeholderName      = regexp.MustCompile(`^[a-zA-Z0-9_]+$`)
)

// clientSetHeaders are headers the clients set themselves; a credential
// header of the same name would break the protocol, not authenticate.
var clientSetHeaders = map[string]bool{
	"Host":                 true,
	"Content-Length":       true,
	"Transfer-Encoding":    true,
	"Connection":           true,
	"Mcp-Session-Id":       true,
	"Mcp-Protocol-Version": true,
}

// Normalize fills in defaults: an MCP connection without a transport gets
// streamable_http. Check does not normalise; call Normalize first to
// accept the short form.
func (c *Connection) Normalize() {
	if c.Kind == KindMCP && c.Config.Transport == "" {
		c.Config.Transport = TransportStreamableHTTP
	}
}

// Check validates a connection before it is stored. It returns nil or an
// EINVALID *bud.Error whose Fields name every problem by path: name, kind,
// config.url, config.transport, config.base_url,
// config.operations[i].name|method|path|parameters, credentials.token,
// credentials.headers.<Name>. A field that does not apply to the kind is a
// problem too. No message holds a credential's value.
func (c Connection) Check() error {
	p := c.problems()
	return p.Err()
}

// problems gathers every problem of c.
func (c Connection) problems() bud.Problems {
	var p bud.Problems
	bud.CheckName(&p, "name", c.Name)
	switch c.Kind {
	case "":
		p.Add("kind", "is required")
	case KindMCP:
		checkMCP(&p, c)
	case KindSlack, KindNotion:
		checkAPI(&p, c)
	case KindHTTP:
		checkHTTP(&p, c)
	default:
		p.Add("kind", "must be one of %s, %s, %s, %s", KindMCP, KindSlack, KindNotion, KindHTTP)
	}
	checkHeaders(&p, c.Credentials.Headers)
	return p
}

func checkMCP(p *bud.Problems, c Connection) {
	if c.Config.URL == "" {
		p.Add("config.url", "is required")
	} else if msg := checkHTTPURL(c.Config.URL); msg != "" {
		p.Add("config.url", "%s", msg)
	}
	switch c.Config.Transport {
	case "", TransportStreamableHTTP, TransportSSE:
	default:
		p.Add("config.transport", "must be %s or %s", TransportStreamableHTTP, TransportSSE)
	}
	notApplicable(p, c.Kind, "config.base_url", c.Config.BaseURL != "")
	notApplicable(p, c.Kind, "config.operations", len(c.Config.Operations) > 0)
	notApplicable(p, c.Kind, "credentials.token", c.Credentials.Token != "")
}

// checkAPI checks a slack or notion connection.
func checkAPI(p *bud.Problems, c Connection) {
	if c.Config.BaseURL != "" {
		checkBaseURL(p, c.Config.BaseURL)
	}
	switch {
	case c.Credentials.Token == "":
		p.Add("credentials.token", "is required")
	case utf8.RuneCountInString(c.Credentials.Token) > bud.MaxSecretLen:
		p.Add("credentials.token", "must be at most %d characters", bud.MaxSecretLen)
	case !validToken(c.Credentials.Token):
		p.Add("credentials.token", "must not contain spaces or control characters")
	}
	notApplicable(p, c.Kind, "config.url", c.Config.URL != "")
	notApplicable(p, c.Kind, "config.transport", c.Config.Transport != "")
	notApplicable(p, c.Kind, "config.operations", len(c.Config.Operations) > 0)
	notApplicable(p, c.Kind, "credentials.headers", len(c.Credentials.Headers) > 0)
}

func checkHTTP(p *bud.Problems, c Connection) {
	if c.Config.BaseURL == "" {
		p.Add("config.base_url", "is required")
	} else {
		checkBaseURL(p, c.Config.BaseURL)
	}
	if len(c.Config.Operations) == 0 {
		p.Add("config.operations", "at least one operation is required")
	}
	first := map[string]int{}
	for i, op := range c.Config.Operations {
		field := fmt.Sprintf("config.operations[%d]", i)
		switch {
		case op.Name == "":
			p.Add(field+".name", "is required")
		case !operationNamePattern.MatchString(op.Name):
			p.Add(field+".name", "must be 1 to 64 letters, digits, _ or -")
		default:
			if j, ok := first[op.Name]; ok {
				p.Add(field+".name", "duplicates config.operations[%d].name", j)
			} else {
				first[op.Name] = i
			}
		}
		switch {
		case op.Method == "":
			p.Add(field+".method", "is required")
		case !slices.Contains(operationMethods, op.Method):
			p.Add(field+".method", "must be one of %s", strings.Join(operationMethods, ", "))
		}
		properties, schemaOK := checkParameters(p, field+".parameters", op.Parameters)
		checkOperationPath(p, field+".path", op.Path, properties, schemaOK)
	}
	notApplicable(p, c.Kind, "config.url", c.Config.URL != "")
	notApplicable(p, c.Kind, "config.transport", c.Config.Transport != "")
	notApplicable(p, c.Kind, "credentials.token", c.Credentials.Token != "")
}

// checkParameters checks an operation's schema and returns the names of
// its properties, and whether it is usable.
func checkParameters(p *bud.Problems, field string, raw json.RawMessage) (map[string]bool, bool) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return map[string]bool{}, true
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		p.Add(field, "must be a JSON object (a JSON Schema)")
		return nil, false
	}
	var typ string
	if err := json.Unmarshal(obj["type"], &typ); err != nil || typ != "object" {
		p.Add(field, `must be an object schema ("type": "object")`)
		return nil, false
	}
	if _, err := compileSchema(raw); err != nil {
		p.Add(field, "is not a valid JSON Schema: %s", err)
		return nil, false
	}
	var props map[string]json.RawMessage
	_ = json.Unmarshal(obj["properties"], &props)
	names := make(map[string]bool, len(props))
	for name := range props {
		names[name] = true
	}
	return names, true
}

func checkOperationPath(p *bud.Problems, field, path string, properties map[string]bool, schemaOK bool) {
	switch {
	case path == "":
		p.Add(field, "is required")
		return
	case !strings.HasPrefix(path, "/"):
		p.Add(field, `must start with "/"`)
		return
	case strings.ContainsAny(path, "?#"):
		p.Add(field, "must not have a query or fragment: arguments become the query")
		return
	}
	rest := placeholderPattern.ReplaceAllString(path, "")
	if strings.ContainsAny(rest, "{}") {
		p.Add(field, "has an unbalanced { or }")
		return
	}
	if msg := pathSegmentProblem(path); msg != "" {
		p.Add(field, "%s", msg)
		return
	}
	for _, m := range placeholderPattern.FindAllStringSubmatch(path, -1) {
		name := m[1]
		if !placeholderName.MatchString(name) {
			p.Add(field, "placeholder {%s} must be letters, digits or _", name)
			return
		}
		if schemaOK && !properties[name] {
			p.Add(field, "placeholder {%s} is not a property of parameters", name)
			return
		}
	}
}

// pathSegmentProblem returns what is wrong with the segments of an
// operation's path, or "": a "." or ".." segment (escaped or not) or an
// empty one ("//") would reach outside the base URL the credentials were
// given for. A trailing "/" is allowed; some APIs want it.
func pathSegmentProblem(path string) string {
	segments := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for i, seg := range segments {
		if seg == "" {
			if i == len(segments)-1 {
				continue
			}
			return "must not have an empty segment (//)"
		}
		if plain, err := url.PathUnescape(seg); err == nil {
			seg = plain
		}
		if seg == "." || seg == ".." {
			return `must not have a "." or ".." segment`
		}
	}
	return ""
}

// checkBaseURL checks config.base_url: an absolute http(s) URL that paths
// can be appended to.
func checkBaseURL(p *bud.Problems, raw string) {
	if msg := checkHTTPURL(raw); msg != "" {
		p.Add("config.base_url", "%s", msg)
		return
	}
	u, _ := url.Parse(raw)
	if u.RawQuery != "" || u.Fragment != "" {
		p.Add("config.base_url", "must not have a query or fragment")
	}
}

// checkHTTPURL returns what is wrong with raw as an absolute http(s) URL,
// or "".
func checkHTTPURL(raw string) string {
	if len(raw) > bud.MaxURLLen {
		return fmt.Sprintf("must be at most %d characters", bud.MaxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "must be a valid URL"
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "must be an absolute http or https URL"
	}
	if u.Host == "" {
		return "must name a host"
	}
	if u.User != nil {
		return "must not hold credentials: put them in credentials.headers"
	}
	return ""
}

// checkHeaders checks credentials.headers. Header names ignore case on the
// wire, so two spellings of one name would send either value, at random:
// the second (in sorted order) is refused.
func checkHeaders(p *bud.Problems, headers map[string]string) {
	seen := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(headers)) {
		value := headers[name]
		field := "credentials.headers." + name
		canon := http.CanonicalHeaderKey(name)
		if first, ok := seen[canon]; ok {
			p.Add(field, "duplicates credentials.headers.%s (header names ignore case)", first)
			continue
		}
		seen[canon] = name
		switch {
		case utf8.RuneCountInString(value) > bud.MaxSecretLen:
			p.Add(field, "must be at most %d characters", bud.MaxSecretLen)
		case !validHeaderName(name):
			p.Add(field, "is not a valid header name")
		case clientSetHeaders[http.CanonicalHeaderKey(name)]:
			p.Add(field, "is set by the client and cannot be a credential")
		case value == "":
			p.Add(field, "must not be empty")
		case !validHeaderValue(value):
			p.Add(field, "must not contain line breaks or control characters")
		}
	}
}

func notApplicable(p *bud.Problems, kind, field string, set bool) {
	if set {
		p.Add(field, "does not apply to kind %s", kind)
	}
}

// validHeaderName reports whether name is an RFC 9110 token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue reports whether value can be sent as is: no control
// characters but tab, so no header can be smuggled in.
func validHeaderValue(value string) bool {
	for i := 0; i < len(value); i++ {
		c := value[i]
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// validToken reports whether a token can follow "Bearer ".
func validToken(token string) bool {
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// schemaURL names the one resource of a private schema compiler; nothing is
// ever fetched from it.
const schemaURL = "urn:bud:connection:parameters"

// refuseLoader loads nothing, so a schema's "$ref" to a file or a URL fails
// to compile instead of reading files or the network.
type refuseLoader struct{}

func (refuseLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("schema references %q: only references inside the schema are allowed", url)
}

// compileSchema compiles an operation's parameters (draft 2020-12 unless
// the schema says otherwise), with no external references.
func compileSchema(raw json.RawMessage) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("decode schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(refuseLoader{})
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, err
	}
	sch, err := c.Compile(schemaURL)
	if err != nil {
		return nil, fmt.Errorf("%s", strings.ReplaceAll(err.Error(), schemaURL, "the schema"))
	}
	return sch, nil
}
