package upstreamtest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// textsParam is a prompt or an embeddings input: a string, an array of
// strings, an array of token ids or an array of such arrays, each reduced
// to a text (token ids as their numbers, space-separated).
type textsParam []string

func (t *textsParam) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*t = textsParam{one}
		return nil
	}
	var many []json.RawMessage
	if err := json.Unmarshal(b, &many); err != nil {
		return &paramError{Param: "input", Message: "Invalid type: expected a string, an array of strings, an array of tokens or an array of token arrays."}
	}
	var tokens []int
	if json.Unmarshal(b, &tokens) == nil {
		*t = textsParam{joinTokens(tokens)}
		return nil
	}
	out := make(textsParam, 0, len(many))
	for _, m := range many {
		var s string
		if json.Unmarshal(m, &s) == nil {
			out = append(out, s)
			continue
		}
		if err := json.Unmarshal(m, &tokens); err != nil {
			return &paramError{Param: "input", Message: "Invalid type: expected a string, an array of strings, an array of tokens or an array of token arrays."}
		}
		out = append(out, joinTokens(tokens))
	}
	*t = out
	return nil
}

func joinTokens(tokens []int) string {
	parts := make([]string, len(tokens))
	for i, n := range tokens {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, " ")
}

// completionRequest is what the stand-in reads of a legacy completion.
type completionRequest struct {
	Model         string      `json:"model"`
	Prompt        *textsParam `json:"prompt"`
	Stream        bool        `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

// completions answers POST /v1/completions: the scripted reply's content
// as the text of one choice (Echo repeats the last prompt), a
// text_completion object or, for stream: true, one chunk per word, a
// chunk with the finish reason, the usage chunk when asked for, and
// [DONE].
func (x *exchange) completions(cfg settings, decodeErr error) {
	var req completionRequest
	if len(x.body) == 0 {
		x.badBody(errEmptyBody)
		return
	}
	if err := json.Unmarshal(x.body, &req); err != nil {
		x.badBody(err)
		return
	}
	if !x.servedModel(cfg, req.Model) {
		return
	}
	if req.Prompt == nil || len(*req.Prompt) == 0 {
		x.fail(http.StatusBadRequest, APIError{Type: "invalid_request_error", Param: "prompt", Code: "missing_required_parameter", Message: "Missing required parameter: 'prompt'."})
		return
	}
	if req.StreamOptions != nil && !req.Stream {
		x.fail(http.StatusBadRequest, APIError{Type: "invalid_request_error", Param: "stream_options", Code: "invalid_value", Message: "The 'stream_options' parameter is only allowed when 'stream' is enabled."})
		return
	}
	p := x.s.nextReply(req.Model)
	if !x.begin(p) {
		return
	}
	prompts := *req.Prompt
	a := p.answerFor(x.s, prompts[len(prompts)-1])
	promptTokens := 0
	for _, t := range prompts {
		promptTokens += CountTokens(t)
	}
	usage := p.usage(a, promptTokens)
	id := x.s.newID("cmpl-")
	created := strconv.FormatInt(time.Now().Unix(), 10)
	head := `{"id":"` + id + `","object":"text_completion","created":` + created + `,"model":` + string(appendJSONString(nil, req.Model)) + `,"choices":`
	choice := func(b []byte, text, finishReason string) []byte {
		b = append(b, `[{"text":`...)
		b = appendJSONString(b, text)
		b = append(b, `,"index":0,"logprobs":null,"finish_reason":`...)
		b = appendNullableString(b, finishReason)
		return append(b, "}]"...)
	}
	if !req.Stream {
		b := append([]byte(head), choice(nil, a.content, a.finishReason)...)
		b = append(b, `,"usage":`...)
		b = appendUsage(b, usage)
		b = append(b, "}\n"...)
		x.send(http.StatusOK, "application/json", p.reply.Header, b)
		return
	}
	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	es := x.startStream(p)
	event := func(choices []byte, withUsage bool) []byte {
		b := append([]byte("data: "), head...)
		b = append(b, choices...)
		if withUsage {
			b = append(b, `,"usage":`...)
			b = appendUsage(b, usage)
		}
		return append(b, "}\n\n"...)
	}
	for _, w := range a.words {
		if !es.send(event(choice(nil, w, ""), false)) {
			return
		}
	}
	if !es.send(event(choice(nil, "", a.finishReason), false)) {
		return
	}
	if includeUsage && !es.send(event([]byte("[]"), true)) {
		return
	}
	es.send([]byte("data: [DONE]\n\n"))
}

// embeddingRequest is what the stand-in reads of an embeddings request.
type embeddingRequest struct {
	Model          string      `json:"model"`
	Input          *textsParam `json:"input"`
	Dimensions     int         `json:"dimensions"`
	EncodingFormat string      `json:"encoding_format"`
}

// DefaultDimensions is the length of the stand-in's embeddings when a
// request does not set dimensions.
const DefaultDimensions = 8

// embeddings answers POST /v1/embeddings with one vector per input, the
// same for the same text (Embedding), as floats or, for
// encoding_format: base64, as OpenAI encodes them (little-endian float32).
// The scripted reply's Delay, Error and RawBody apply; its content does
// not.
func (x *exchange) embeddings(cfg settings, decodeErr error) {
	var req embeddingRequest
	if len(x.body) == 0 {
		x.badBody(errEmptyBody)
		return
	}
	if err := json.Unmarshal(x.body, &req); err != nil {
		x.badBody(err)
		return
	}
	if !x.servedModel(cfg, req.Model) {
		return
	}
	if req.Input == nil || len(*req.Input) == 0 {
		x.fail(http.StatusBadRequest, APIError{Type: "invalid_request_error", Param: "input", Code: "missing_required_parameter", Message: "Missing required parameter: 'input'."})
		return
	}
	if req.EncodingFormat != "" && req.EncodingFormat != "float" && req.EncodingFormat != "base64" {
		x.fail(http.StatusBadRequest, APIError{Type: "invalid_request_error", Param: "encoding_format", Code: "invalid_value", Message: "Invalid value for 'encoding_format': expected 'float' or 'base64'."})
		return
	}
	if req.Dimensions < 0 || req.Dimensions > 4096 {
		x.fail(http.StatusBadRequest, APIError{Type: "invalid_request_error", Param: "dimensions", Code: "invalid_value", Message: "Invalid value for 'dimensions': expected 1 to 4096."})
		return
	}
	p := x.s.nextReply(req.Model)
	if !x.begin(p) {
		return
	}
	dims := req.Dimensions
	if dims == 0 {
		dims = DefaultDimensions
	}
	b := append([]byte(nil), `{"object":"list","data":[`...)
	tokens := 0
	for i, text := range *req.Input {
		tokens += CountTokens(text)
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"object":"embedding","index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"embedding":`...)
		v := Embedding(text, dims)
		if req.EncodingFormat == "base64" {
			raw := make([]byte, 0, 4*len(v))
			for _, f := range v {
				raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(f))
			}
			b = appendJSONString(b, base64.StdEncoding.EncodeToString(raw))
		} else {
			b = append(b, '[')
			for j, f := range v {
				if j > 0 {
					b = append(b, ',')
				}
				b = strconv.AppendFloat(b, float64(f), 'g', -1, 32)
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	b = append(b, `],"model":`...)
	b = appendJSONString(b, req.Model)
	if p.reply.Usage != nil {
		tokens = p.reply.Usage.PromptTokens
	}
	b = append(b, `,"usage":{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(tokens), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(tokens), 10)
	b = append(b, "}}\n"...)
	x.send(http.StatusOK, "application/json", p.reply.Header, b)
}

// Embedding is the stand-in's embedding of text: dims numbers drawn from
// the text's SHA-256, scaled to unit length, so that equal texts have
// equal vectors and a test can compute what to expect.
func Embedding(text string, dims int) []float32 {
	v := make([]float32, dims)
	var sum float64
	for i := range v {
		h := sha256.Sum256([]byte(strconv.Itoa(i) + "\x00" + text))
		f := float64(int32(binary.BigEndian.Uint32(h[:4]))) / math.MaxInt32
		v[i] = float32(f)
		sum += f * f
	}
	if n := math.Sqrt(sum); n > 0 {
		for i := range v {
			v[i] = float32(float64(v[i]) / n)
		}
	}
	return v
}

// servedModel answers 400 or 404 to a request without a model or for a
// model not served, and reports whether it may go on.
func (x *exchange) servedModel(cfg settings, model string) bool {
	if model == "" {
		x.fail(http.StatusBadRequest, APIError{Type: "invalid_request_error", Param: "model", Code: "missing_required_parameter", Message: "Missing required parameter: 'model'."})
		return false
	}
	if cfg.served != nil && !cfg.served[model] {
		x.modelNotFound(model)
		return false
	}
	return true
}
