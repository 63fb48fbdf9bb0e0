package replycache

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/budhq/bud"
	"github.com/budhq/bud/run"
)

// Generation names a deployment as it stands: its id and when it last
// changed. Every change of a deployment (its upstream, defaults, pinned
// version or settings) sets a new updated_at, so an answer cached under
// one generation is never served once the deployment has changed.
type Generation struct {
	ID        uuid.UUID
	UpdatedAt time.Time
}

// keyVersion is hashed into every key: a release that changes what a key
// covers or how an entry is written changes it, so that entries of
// another release in a shared Redis are never read as this one's.
const keyVersion = "bud-replycache/1"

// unanswered are the request fields that do not change a chat
// completion's answer, and are left out of its key so that requests that
// differ only there share one entry:
//
//   - model: the deployment's generation stands for it (a deployment has
//     one name, and the upstream model is part of the deployment);
//   - user, safety_identifier: who the end user is, for the provider's
//     abuse monitoring;
//   - metadata, store: whether and how the provider keeps the completion
//     for its dashboards (a cached answer is not kept there again);
//   - prompt_cache_key: a routing hint for the provider's own prompt
//     cache.
//
// stream and stream_options change the answer's form and stay in the key
// (see the package documentation). Keep the list in step with the
// package documentation.
var unanswered = map[string]bool{
	`"model"`: true, `"user"`: true, `"safety_identifier"`: true,
	`"metadata"`: true, `"store"`: true, `"prompt_cache_key"`: true,
}

var comma, colon = []byte{','}, []byte{':'}

// canonicalizers are reused across requests: a key costs no allocation
// beyond its string once they have grown to the bodies seen.
var canonicalizers = sync.Pool{New: func() any { return &canonicalizer{h: sha256.New()} }}

func getCanonicalizer() *canonicalizer {
	c := canonicalizers.Get().(*canonicalizer)
	c.h.Reset()
	return c
}

// maxPooledCanonical keeps one huge body from pinning its buffers.
const maxPooledCanonical = 1 << 20

func putCanonicalizer(c *canonicalizer) {
	if cap(c.out) > maxPooledCanonical || cap(c.tmp) > maxPooledCanonical {
		return
	}
	c.in = nil
	canonicalizers.Put(c)
}

// chatKey is the key of a chat completion body (a JSON object) sent to
// the deployment g with defaults, whether it asks for a stream, and
// whether it is deterministic (see Cacheable). ok is false when the
// body is not a JSON object: such a request is never cached. The body's
// top-level members enter the key canonical and without the fields of
// unanswered; `stream` enters it only when true, and `stream_options`
// only with it, since an upstream ignores (or refuses) them otherwise.
func chatKey(prefix, kind string, g Generation, body []byte, defaults map[string]json.RawMessage) (key string, stream, determ, ok bool) {
	c := getCanonicalizer()
	defer putCanonicalizer(c)
	if c.canonical(body) != nil || len(c.out) == 0 || c.out[0] != '{' {
		return "", false, false, false
	}
	v, _ := c.lookup(`"stream"`)
	stream = string(v) == "true"
	h := c.h
	c.writeHead(kind, g)
	first := true
	for i := range c.top {
		k, v := c.member(i)
		switch {
		case unanswered[string(k)]:
			continue
		case !stream && (string(k) == `"stream"` || string(k) == `"stream_options"`):
			continue
		}
		if !first {
			h.Write(comma)
		}
		first = false
		h.Write(k)
		h.Write(colon)
		h.Write(v)
	}
	return c.key(prefix, kind+":"), stream, deterministic(c, defaults), true
}

// writeHead starts a key's hash: the key version, the kind of request,
// and the generations of the deployments its answer depends on.
func (c *canonicalizer) writeHead(kind string, gens ...Generation) {
	b := append(c.scratch[:0], keyVersion...)
	b = append(append(append(b, 0), kind...), 0)
	for _, g := range gens {
		b = append(b, g.ID[:]...)
		b = binary.BigEndian.AppendUint64(b, uint64(g.UpdatedAt.UnixNano()))
		b = append(b, 0)
	}
	c.scratch = b
	c.h.Write(b)
}

// key is the key hashed so far: the prefix, the kind, and the hash in
// hex.
func (c *canonicalizer) key(prefix, kind string) string {
	var x [2 * sha256.Size]byte
	hex.Encode(x[:], c.h.Sum(c.sum[:0]))
	return prefix + kind + string(x[:])
}

// promptKey is the key of a prompt run's first turn: the project, the
// prompt version (or, for a document never saved, the document itself),
// the input (text, variables, items), the instructions, and how the run
// is run (a replay's recorded tools, ending at a pause), after the
// generations of the deployments the answer depends on. ok is false when
// a JSON part cannot be read.
func promptKey(prefix string, in run.Input, gens []Generation) (string, bool) {
	c := getCanonicalizer()
	defer putCanonicalizer(c)
	h := c.h
	c.writeHead("prompt", gens...)
	field := func(name string, value []byte) {
		h.Write([]byte(name))
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(value)))
		h.Write(n[:])
		h.Write(value)
	}
	canonicalField := func(name string, raw []byte) bool {
		if len(bytes.TrimSpace(raw)) == 0 {
			field(name, nil)
			return true
		}
		if c.canonical(raw) != nil {
			return false
		}
		field(name, c.out)
		return true
	}
	field("project", in.ProjectID[:])
	field("prompt", in.PromptID[:])
	field("version", strconv.AppendInt(nil, int64(in.PromptVersion), 10))
	if in.PromptID == uuid.Nil && !canonicalField("document", in.Document) {
		return "", false
	}
	field("text", []byte(in.Text))
	// encoding/json writes a map's keys sorted; canonical then gives its
	// strings and numbers one spelling.
	vars, err := json.Marshal(in.Variables)
	if err != nil || !canonicalField("variables", vars) || !canonicalField("items", in.InputItems) {
		return "", false
	}
	field("instructions", []byte(in.Instructions))
	field("replay_of", []byte(in.ReplayOf))
	field("replay_tools", []byte(in.ReplayTools))
	field("end_at_pause", strconv.AppendBool(nil, in.EndAtPause))
	return c.key(prefix, "prompt:"), true
}

// Cacheable reports whether a request may be answered from the cache
// under settings s: the cache is enabled with a time to live, and the
// request is deterministic, or the deployment caches sampling requests
// too (s.Nondeterministic). A request samples when its temperature is
// above 0 and it has no seed. params is the request's JSON object (a chat
// completion's body, a prompt's model_params), defaults the parameters
// that apply where params has none (the model deployment's), so a
// temperature set only as a deployment default counts.
//
// A temperature that neither sets counts as deterministic: the rule reads
// what the request and the deployment say, not what an upstream assumes
// without them (OpenAI samples at 1, vLLM at the model's generation
// config), which Bud cannot know. A request for several choices (n > 1)
// is cached like any other: n is part of its key, and the rule above
// decides whether its choices are reproducible. A temperature under
// another spelling ("Temperature") counts, a seed does not (see
// deterministic). A params that is not a JSON object is never cacheable.
func Cacheable(s bud.CacheSettings, params []byte, defaults map[string]json.RawMessage) bool {
	if !s.Enabled || s.TTLSeconds <= 0 {
		return false
	}
	if s.Nondeterministic {
		return isObject(params)
	}
	c := getCanonicalizer()
	defer putCanonicalizer(c)
	if len(bytes.TrimSpace(params)) == 0 {
		params = []byte("{}")
	}
	if c.canonical(params) != nil || c.out[0] != '{' {
		return false
	}
	return deterministic(c, defaults)
}

// deterministic reports whether the request c holds the canonical body
// of, with defaults, has a temperature of 0 or none, or a seed. A
// temperature that is not a number is not deterministic: the upstream
// refuses it, and a refusal is not cached anyway. An upstream that reads
// keys case-insensitively (encoding/json does) may sample on
// "Temperature", so any spelling of it above 0 counts; a seed counts
// only under its own name, since an upstream that reads keys as written
// ignores "Seed".
func deterministic(c *canonicalizer, defaults map[string]json.RawMessage) bool {
	temperature, hasTemperature := c.lookup(`"temperature"`)
	seed, hasSeed := c.lookup(`"seed"`)
	// The caller's member wins over the default, null included, as the
	// gateway and the worker merge them.
	if !hasTemperature {
		temperature = bytes.TrimSpace(defaults["temperature"])
	}
	if !hasSeed {
		seed = bytes.TrimSpace(defaults["seed"])
	}
	if len(seed) > 0 && string(seed) != "null" {
		return true
	}
	if samples(temperature) {
		return false
	}
	for i := range c.top {
		k, v := c.member(i)
		if name := k[1 : len(k)-1]; string(name) != "temperature" && bytes.EqualFold(name, []byte("temperature")) && samples(v) {
			return false
		}
	}
	return true
}

// samples reports whether a temperature's JSON value makes a model
// sample: a number above 0, or anything but a number or null.
func samples(temperature []byte) bool {
	if len(temperature) == 0 || string(temperature) == "null" {
		return false
	}
	t, err := strconv.ParseFloat(string(temperature), 64)
	return err != nil || t > 0
}

func isObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) == 0 || b[0] == '{' && json.Valid(b)
}
