package upstreamtest

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// CountTokens is the stand-in's tokenizer: one token per whitespace-separated
// word. Prompt tokens are the words of the text in the request's messages
// (or input and instructions), completion tokens the words of the reply's
// content plus those of each tool call's name and arguments.
func CountTokens(text string) int {
	n := 0
	inWord := false
	for _, r := range text {
		if unicode.IsSpace(r) {
			inWord = false
			continue
		}
		if !inWord {
			n++
			inWord = true
		}
	}
	return n
}

// splitWords splits text into stream chunks: one per word, each with the
// whitespace before it, the last also with the whitespace after it, so that
// the chunks concatenate to text and there are as many as CountTokens says.
func splitWords(text string) []string {
	var words []string
	start := 0
	inWord := false
	for i, r := range text {
		space := unicode.IsSpace(r)
		if space && inWord {
			words = append(words, text[start:i])
			start = i
		}
		inWord = !space
	}
	switch {
	case start == len(text):
	case inWord || len(words) == 0:
		words = append(words, text[start:])
	default:
		words[len(words)-1] += text[start:]
	}
	return words
}

// argumentFragmentBytes is about how much of a tool call's arguments one
// stream chunk carries; real servers send a few tokens at a time.
const argumentFragmentBytes = 8

// splitArguments cuts arguments into stream fragments without splitting a
// UTF-8 sequence, which would corrupt the reassembled text.
func splitArguments(arguments string) []string {
	var fragments []string
	for len(arguments) > 0 {
		n := min(argumentFragmentBytes, len(arguments))
		for n < len(arguments) && !utf8.RuneStart(arguments[n]) {
			n++
		}
		fragments = append(fragments, arguments[:n])
		arguments = arguments[n:]
	}
	return fragments
}

// appendJSONString appends s as a JSON string, as encoding/json would,
// without reflection; it is on the path of every response.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			// Valid JSON, but they end a line in JavaScript; encoding/json
			// escapes them too.
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendNullableString appends s as a JSON string, or null when it is empty.
func appendNullableString(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return appendJSONString(b, s)
}

func appendErrorEnvelope(b []byte, e APIError) []byte {
	b = append(b, `{"error":{"message":`...)
	b = appendJSONString(b, e.Message)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, e.Type)
	b = append(b, `,"param":`...)
	b = appendNullableString(b, e.Param)
	b = append(b, `,"code":`...)
	b = appendNullableString(b, e.Code)
	return append(b, "}}\n"...)
}

func appendUsage(b []byte, u Usage) []byte {
	b = append(b, `{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(u.PromptTokens), 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, int64(u.CompletionTokens), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(u.TotalTokens), 10)
	return append(b, '}')
}

// request holds the fields of a chat completions or responses request that
// the stand-in acts on; the rest is only recorded.
type request struct {
	Model         string `json:"model"`
	Stream        bool   `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	// Messages is nil when absent or null, and empty but not nil for [].
	Messages     []inputItem `json:"messages"`
	Input        inputItems  `json:"input"`
	Instructions string      `json:"instructions"`
	// ResponseFormat is kept raw: only a server that checks strict schemas
	// reads it.
	ResponseFormat json.RawMessage `json:"response_format"`
}

// inputItem is a chat message or a Responses input item, reduced to its text.
type inputItem struct {
	Role    string      `json:"role"`
	Content contentText `json:"content"`
	// Output is the result a function_call_output item hands back.
	Output contentText `json:"output"`
}

// inputItems is a Responses `input`: a string, standing for one user
// message, or an array of items.
type inputItems []inputItem

func (in *inputItems) UnmarshalJSON(b []byte) error {
	switch b[0] {
	case '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*in = inputItems{{Role: "user", Content: contentText(s)}}
		return nil
	case 'n':
		*in = nil
		return nil
	}
	if b[0] != '[' {
		return &paramError{Param: "input", Message: "Invalid type for 'input': expected a string or an array of input items."}
	}
	var items []inputItem
	if err := json.Unmarshal(b, &items); err != nil {
		return err
	}
	*in = items
	return nil
}

// contentText is a message's content reduced to its text. OpenAI accepts a
// string or an array of parts; only the text parts count here.
type contentText string

// paramError is a request field of a shape OpenAI rejects; its message is
// meant for the client.
type paramError struct {
	Param   string
	Message string
}

func (e *paramError) Error() string { return e.Message }

func (t *contentText) UnmarshalJSON(b []byte) error {
	switch b[0] {
	case '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*t = contentText(s)
		return nil
	case 'n':
		*t = ""
		return nil
	case '[':
		var parts []struct {
			Text string `json:"text"`
		}
		if err := json.Unmarshal(b, &parts); err != nil {
			return err
		}
		texts := make([]string, 0, len(parts))
		for _, p := range parts {
			if p.Text != "" {
				texts = append(texts, p.Text)
			}
		}
		*t = contentText(strings.Join(texts, "\n"))
		return nil
	}
	return &paramError{Param: "content", Message: "Invalid type for 'content': expected a string or an array of content parts."}
}

// promptTokens counts the words of every item's text.
func promptTokens(items []inputItem) int {
	n := 0
	for _, it := range items {
		n += CountTokens(string(it.Content)) + CountTokens(string(it.Output))
	}
	return n
}

// lastUserText is what an Echo reply repeats.
func lastUserText(items []inputItem) string {
	for i := len(items) - 1; i >= 0; i-- {
		if items[i].Role == "user" {
			return string(items[i].Content)
		}
	}
	return ""
}

// toolResults is what an EchoTools reply repeats: the "tool" messages after
// the last assistant message, one per line.
func toolResults(items []inputItem) string {
	var out []string
	for i := len(items) - 1; i >= 0 && items[i].Role != "assistant"; i-- {
		if items[i].Role == "tool" {
			out = append(out, string(items[i].Content))
		}
	}
	slices.Reverse(out)
	return strings.Join(out, "\n")
}
