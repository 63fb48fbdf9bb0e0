package prompt

import (
	"encoding/json"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Widgets of the run form.
const (
	WidgetText     = "text"
	WidgetTextarea = "textarea"
	WidgetNumber   = "number"
	WidgetSwitch   = "switch"
	WidgetSelect   = "select"
	WidgetList     = "list"
	WidgetGroup    = "group"
)

// shortText is the longest max_length that still gets a one-line field.
const shortText = 200

// FormStep is one step of the sequential run form: one input variable, with
// what a browser needs to show and check it. Constraints use the names of
// HTML input attributes where there is one (minLength, maxLength, pattern,
// min, max, step, …) plus exclusiveMin, exclusiveMax, minItems, maxItems and
// format.
type FormStep struct {
	Name        string         `json:"name,omitempty"` // empty for the element of a list
	Label       string         `json:"label"`
	Description string         `json:"description,omitempty"`
	Widget      string         `json:"widget"`
	Type        string         `json:"type"`
	Default     any            `json:"default,omitempty"`
	Required    bool           `json:"required"`
	Options     []string       `json:"options,omitempty"`
	Constraints map[string]any `json:"constraints,omitempty"`
	Items       *FormStep      `json:"items,omitempty"` // a list's element
	Fields      []FormStep     `json:"fields,omitempty"`
}

// Form returns the steps of the run form, in the order of the input's
// variables. A text input is one required textarea step named "input".
// Strings get a textarea unless max_length is at most 200 or a format is
// set, integers and numbers a number field (integers step 1), booleans a
// switch, enums a select, arrays a list of their element, objects a group of
// their fields.
func (d *Document) Form() []FormStep {
	if !d.Input.Structured() {
		return []FormStep{{Name: "input", Label: "Input", Widget: WidgetTextarea, Type: TypeString, Required: true}}
	}
	steps := make([]FormStep, 0, len(d.Input.Variables))
	for _, v := range d.Input.Variables {
		steps = append(steps, formStep(v))
	}
	return steps
}

func formStep(v Variable) FormStep {
	s := FormStep{
		Name:        v.Name,
		Label:       humanize(v.Name),
		Description: v.Description,
		Type:        v.Type,
		Required:    v.Required,
	}
	if s.Label == "" {
		s.Label = "Item"
	}
	if v.hasDefault() {
		var def any
		if json.Unmarshal(v.Default, &def) == nil {
			s.Default = def
		}
	}
	var b Basic
	if v.Validation != nil && v.Validation.Basic != nil {
		b = *v.Validation.Basic
	}
	c := map[string]any{}
	switch v.Type {
	case TypeString:
		s.Widget = WidgetTextarea
		if (b.MaxLength != nil && *b.MaxLength <= shortText) || b.Format != "" {
			s.Widget = WidgetText
		}
		putInt(c, "minLength", b.MinLength)
		putInt(c, "maxLength", b.MaxLength)
		if b.Pattern != "" {
			c["pattern"] = b.Pattern
		}
		if b.Format != "" {
			c["format"] = b.Format
		}
	case TypeInteger, TypeNumber:
		s.Widget = WidgetNumber
		putFloat(c, "min", b.Ge)
		putFloat(c, "max", b.Le)
		putFloat(c, "exclusiveMin", b.Gt)
		putFloat(c, "exclusiveMax", b.Lt)
		putFloat(c, "step", b.MultipleOf)
		if v.Type == TypeInteger && b.MultipleOf == nil {
			c["step"] = 1
		}
	case TypeBoolean:
		s.Widget = WidgetSwitch
	case TypeEnum:
		s.Widget = WidgetSelect
		s.Options = v.Options
	case TypeArray:
		s.Widget = WidgetList
		putInt(c, "minItems", b.MinItems)
		putInt(c, "maxItems", b.MaxItems)
		if v.Items != nil {
			item := formStep(*v.Items)
			s.Items = &item
		}
	case TypeObject:
		s.Widget = WidgetGroup
		for _, f := range v.Variables {
			s.Fields = append(s.Fields, formStep(f))
		}
	}
	if len(c) > 0 {
		s.Constraints = c
	}
	return s
}

func putInt(c map[string]any, key string, n *int) {
	if n != nil {
		c[key] = *n
	}
}

// putFloat stores whole numbers as integers, so a form shows 18, not 18.0.
func putFloat(c map[string]any, key string, f *float64) {
	if f == nil {
		return
	}
	if *f == float64(int64(*f)) {
		c[key] = int64(*f)
		return
	}
	c[key] = *f
}

// humanize turns a variable name into a label: "first_name" and "firstName"
// become "First name", "user_ID" becomes "User ID".
func humanize(name string) string {
	var words []string
	for _, part := range strings.FieldsFunc(name, func(r rune) bool { return r == '_' || r == '-' }) {
		words = append(words, splitCamel(part)...)
	}
	for i, w := range words {
		if !isUpper(w) || utf8.RuneCountInString(w) == 1 {
			words[i] = strings.ToLower(w)
		}
	}
	if len(words) == 0 {
		return ""
	}
	r, size := utf8.DecodeRuneInString(words[0])
	words[0] = string(unicode.ToUpper(r)) + words[0][size:]
	return strings.Join(words, " ")
}

// splitCamel splits "firstName" into "first", "Name" and "userID" into
// "user", "ID", keeping runs of capitals together.
func splitCamel(s string) []string {
	rs := []rune(s)
	var out []string
	start := 0
	for i := 1; i < len(rs); i++ {
		lowerToUpper := unicode.IsLower(rs[i-1]) && unicode.IsUpper(rs[i])
		acronymEnd := i+1 < len(rs) && unicode.IsUpper(rs[i-1]) && unicode.IsUpper(rs[i]) && unicode.IsLower(rs[i+1])
		digitEdge := unicode.IsLetter(rs[i-1]) != unicode.IsLetter(rs[i]) && (unicode.IsDigit(rs[i-1]) || unicode.IsDigit(rs[i]))
		if lowerToUpper || acronymEnd || digitEdge {
			out = append(out, string(rs[start:i]))
			start = i
		}
	}
	return append(out, string(rs[start:]))
}

func isUpper(s string) bool {
	for _, r := range s {
		if unicode.IsLower(r) {
			return false
		}
	}
	return true
}
