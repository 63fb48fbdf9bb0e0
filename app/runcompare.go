package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/sergi/go-diff/diffmatchpatch"

	"github.com/budhq/bud"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/prompt"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runs"
	"github.com/budhq/bud/statestore"
)

// Bounds on the runs of one comparison.
const (
	minComparedRuns = 2
	maxComparedRuns = 8
)

// Where a compared run's document came from (ComparedRun.DocumentSource).
const (
	// DocumentFromVersion: the saved version the run names, read from the
	// state store.
	DocumentFromVersion = "prompt_version"
	// DocumentFromHistory: the document the run's workflow was started
	// with, read from its Temporal history (a run of an unsaved document).
	DocumentFromHistory = "run_history"
	// DocumentUnavailable: neither is there any more; DocumentNote says
	// why.
	DocumentUnavailable = "unavailable"
	// DocumentKept: the copy the run kept of its own document, by content
	// (an unsaved document, or a saved one changed for a replay).
	DocumentKept = "run_document"
)

// validationUnknown is a run's validation when its document is not
// available and its record alone does not tell.
const validationUnknown = "unknown"

// runCompareRequest is the body of POST /api/runs/compare.
type runCompareRequest struct {
	// ProjectID, when given, is the project every run must belong to;
	// without it, the first run's project is.
	ProjectID string   `json:"project_id"`
	RunIDs    []string `json:"run_ids"`
}

// RunComparison is the answer of POST /api/runs/compare: the runs side by
// side, in the order asked, and each run after the first against the first.
type RunComparison struct {
	ProjectID   uuid.UUID       `json:"project_id"`
	Runs        []ComparedRun   `json:"runs"`
	Differences []RunDifference `json:"differences"`
}

// ComparedRun is one run of a comparison: its record, the document it ran
// and how its output fared.
type ComparedRun struct {
	Index int `json:"index"`
	RunSummary
	// Document is the prompt document the run ran; null when
	// DocumentSource is "unavailable".
	Document json.RawMessage `json:"document"`
	// DocumentSource is prompt_version, run_document, run_history or
	// unavailable.
	DocumentSource string `json:"document_source"`
	// DocumentNote says why the document is unavailable.
	DocumentNote string `json:"document_note,omitempty"`
	// Input is what the caller gave (text, variables, input items,
	// instructions).
	Input json.RawMessage `json:"input"`
	// RenderedMessages are the messages of the first model call; null when
	// the run failed before rendering.
	RenderedMessages json.RawMessage `json:"rendered_messages"`
	Output           ComparedOutput  `json:"output"`
	Validation       RunValidation   `json:"validation"`
	// ToolCalls are the connection tool calls as recorded.
	ToolCalls json.RawMessage `json:"tool_calls"`
	// ModelCalls is how many model calls the run made, repairs included;
	// Calls lists them as recorded (attempt, latency, usage, finish reason).
	ModelCalls int             `json:"model_calls"`
	Calls      json.RawMessage `json:"calls"`
}

// ComparedOutput is what a run answered: its final text, its parsed
// structured output (null for a text output or none) and the function
// calls it returned.
type ComparedOutput struct {
	Text          string          `json:"text"`
	Parsed        json.RawMessage `json:"parsed"`
	FunctionCalls json.RawMessage `json:"function_calls,omitempty"`
}

// RunValidation is how a run's output fared against its output schema.
type RunValidation struct {
	// Status is passed, failed (the reply stayed invalid), not_applicable
	// (a text output, or no reply was checked), or unknown (the document
	// is unavailable and the record does not tell).
	Status string `json:"status"`
	// Message names the problems of a failed output, or why the status is
	// unknown.
	Message string `json:"message,omitempty"`
}

// RunDifference is one run against the first run of the comparison.
type RunDifference struct {
	RunID   string `json:"run_id"`
	Against string `json:"against"`
	// Document, Input, RenderedMessages and ToolCalls are the changes from
	// the first run's to this run's. Tool calls are compared on what they
	// did — name, server label, connection, arguments, output, error,
	// approval, turn — not on call ids and timings, which always differ.
	Document         ChangeSet `json:"document"`
	Input            ChangeSet `json:"input"`
	RenderedMessages ChangeSet `json:"rendered_messages"`
	ToolCalls        ChangeSet `json:"tool_calls"`
	// OutputText is a word diff of the output texts.
	OutputText TextDiff `json:"output_text"`
	// StructuredOutput compares the parsed outputs field by field.
	StructuredOutput FieldDiff `json:"structured_output"`
	// Usage, LatencyMS and ModelCalls are this run's figures minus the
	// first run's.
	Usage      RunUsage `json:"usage"`
	LatencyMS  int64    `json:"latency_ms"`
	ModelCalls int      `json:"model_calls"`
}

// ChangeSet is the RFC 6902 changes from one JSON value to another, when
// both are there to compare.
type ChangeSet struct {
	// Available is false when either side is missing; Note says which and
	// why, and Changes is null.
	Available bool     `json:"available"`
	Note      string   `json:"note,omitempty"`
	Changes   []Change `json:"changes"`
}

// Kinds of a TextChange.
const (
	TextEqual  = "equal"
	TextDelete = "delete"
	TextInsert = "insert"
)

// TextChange is a stretch of words: in both texts (equal), only in the
// first run's (delete) or only in this run's (insert).
type TextChange struct {
	Op   string `json:"op"`
	Text string `json:"text"`
}

// TextDiff is a word diff: the equal and deleted stretches, in order, make
// the first run's text; the equal and inserted ones make this run's.
type TextDiff struct {
	// Note says when a side had no output at all (it is compared as "").
	Note    string       `json:"note,omitempty"`
	Changes []TextChange `json:"changes"`
}

// Statuses of a FieldChange.
const (
	FieldEqual   = "equal"
	FieldChanged = "changed"
	FieldAdded   = "added"
	FieldRemoved = "removed"
)

// FieldDiff compares two structured outputs field by field.
type FieldDiff struct {
	// Available is false when either run has no parsed structured output;
	// Note says which and why.
	Available bool          `json:"available"`
	Note      string        `json:"note,omitempty"`
	Fields    []FieldChange `json:"fields"`
}

// FieldChange is one top-level field of two structured outputs.
type FieldChange struct {
	// Path is the field's JSON Pointer ("/summary").
	Path string `json:"path"`
	// Status is equal (Value holds it), changed (Old and New), added (New
	// only) or removed (Old only).
	Status string           `json:"status"`
	Value  *json.RawMessage `json:"value,omitempty"`
	Old    *json.RawMessage `json:"old,omitempty"`
	New    *json.RawMessage `json:"new,omitempty"`
}

// compareRuns answers POST /api/runs/compare: 2 to 8 recorded runs of one
// project side by side, and each after the first against the first. A run
// of another project is as absent as one that does not exist: a 404 naming
// its place in run_ids.
func (s *server) compareRuns(w http.ResponseWriter, r *http.Request) {
	var in runCompareRequest
	if !s.decode(w, r, &in) {
		return
	}
	if err := checkCompareRequest(in); err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx := r.Context()
	project, rows, err := s.comparedRows(ctx, in)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := RunComparison{ProjectID: project, Runs: make([]ComparedRun, len(rows)), Differences: make([]RunDifference, 0, len(rows)-1)}
	for i, row := range rows {
		if out.Runs[i], err = s.comparedRun(ctx, i, row); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	for i := 1; i < len(rows); i++ {
		d, err := runDifference(out.Runs[0], out.Runs[i])
		if err != nil {
			s.writeError(w, r, bud.Internal("compare runs", err))
			return
		}
		out.Differences = append(out.Differences, d)
	}
	writeJSON(w, http.StatusOK, out)
}

// checkCompareRequest refuses a request that names too few or too many
// runs, a blank or repeated id, or a project id that is not a UUID.
func checkCompareRequest(in runCompareRequest) error {
	var p bud.Problems
	if in.ProjectID != "" {
		if _, err := uuid.Parse(in.ProjectID); err != nil {
			p.Add("project_id", "must be a UUID")
		}
	}
	switch n := len(in.RunIDs); {
	case in.RunIDs == nil:
		p.Add("run_ids", "is required: the ids of %d to %d runs", minComparedRuns, maxComparedRuns)
	case n < minComparedRuns || n > maxComparedRuns:
		p.Add("run_ids", "must hold %d to %d run ids, not %d", minComparedRuns, maxComparedRuns, n)
	}
	first := map[string]int{}
	for i, id := range in.RunIDs {
		field := "run_ids[" + strconv.Itoa(i) + "]"
		if strings.TrimSpace(id) == "" {
			p.Add(field, "must not be blank")
			continue
		}
		if j, seen := first[id]; seen {
			p.Add(field, "repeats run_ids[%d]", j)
			continue
		}
		first[id] = i
	}
	return p.Err()
}

// comparedRows reads the runs in the order asked, all of one project: the
// request's, or else the first run's. Every run that is absent, or of
// another project, is named in one 404.
func (s *server) comparedRows(ctx context.Context, in runCompareRequest) (uuid.UUID, []dbsqlc.Run, error) {
	var project uuid.UUID
	if in.ProjectID != "" {
		var err error
		if project, err = s.requestProject(ctx, in.ProjectID); err != nil {
			return project, nil, err
		}
	}
	rows := make([]dbsqlc.Run, len(in.RunIDs))
	var missing bud.Problems
	for i, id := range in.RunIDs {
		field := "run_ids[" + strconv.Itoa(i) + "]"
		var row dbsqlc.Run
		var err error
		if project == uuid.Nil {
			row, err = s.q.GetRunByID(ctx, id)
			project = row.ProjectID
		} else {
			row, err = s.q.GetRun(ctx, dbsqlc.GetRunParams{ProjectID: project, ID: id})
		}
		switch {
		case db.IsNoRows(err):
			missing.Add(field, "no run of this project has this id (a run still in progress has no record until it ends)")
			continue
		case err != nil:
			return project, nil, bud.Internal("get run", err)
		}
		rows[i] = row
	}
	if len(missing) > 0 {
		return project, nil, &bud.Error{Code: bud.ENOTFOUND, Message: "run not found: " + missing.String(), Fields: missing}
	}
	return project, rows, nil
}

// comparedRun is row as a compared run, with its document.
func (s *server) comparedRun(ctx context.Context, i int, row dbsqlc.Run) (ComparedRun, error) {
	c := ComparedRun{
		Index: i, RunSummary: runSummaryFromRow(row), Input: row.Input, RenderedMessages: row.RenderedMessages,
		ToolCalls: row.ToolCalls, Calls: row.ModelCalls,
	}
	var calls []json.RawMessage
	if len(row.ModelCalls) > 0 {
		if err := json.Unmarshal(row.ModelCalls, &calls); err != nil {
			return c, bud.Internal("read recorded model calls", err)
		}
	}
	c.ModelCalls = len(calls)
	var out struct {
		Text          string          `json:"text"`
		Parsed        json.RawMessage `json:"parsed"`
		FunctionCalls json.RawMessage `json:"function_calls"`
	}
	if !isAbsent(row.Output) {
		if err := json.Unmarshal(row.Output, &out); err != nil {
			return c, bud.Internal("read recorded output", err)
		}
	}
	c.Output = ComparedOutput{Text: out.Text, Parsed: out.Parsed, FunctionCalls: out.FunctionCalls}
	if isAbsent(c.Output.Parsed) {
		c.Output.Parsed = json.RawMessage("null")
	}

	var err error
	c.Document, c.DocumentSource, c.DocumentNote, err = s.runDocument(ctx, row)
	if err != nil {
		return c, err
	}
	var doc *prompt.Document
	if c.Document != nil {
		// A stored document that no longer parses is still shown; only
		// what needs it parsed (validation) goes without.
		doc, _ = prompt.Parse(c.Document)
	}
	c.Validation = runValidation(doc, row, c.Output.Parsed)
	return c, nil
}

// runDocument finds the document a run ran: the copy it kept by content,
// or else its saved version's, both from the state store, or else the one
// its workflow started with, from Temporal.
// When neither is there it says why rather than guess.
func (s *server) runDocument(ctx context.Context, row dbsqlc.Run) (json.RawMessage, string, string, error) {
	var notes []string
	if row.DocumentKey != nil {
		// The run kept its own document by content: exactly what ran.
		doc, err := s.runDocs.get(ctx, *row.DocumentKey)
		switch {
		case err == nil:
			return doc, DocumentKept, "", nil
		case errors.Is(err, statestore.ErrNotFound):
			notes = append(notes, "the state store no longer holds the run's document")
		case bud.ErrorCode(err) == bud.EUNAVAILABLE:
			notes = append(notes, "the prompt store (Dapr state store) is unavailable")
		default:
			return nil, "", "", err
		}
	} else if row.PromptID != nil && row.PromptVersion != nil {
		_, doc, err := s.document(ctx, *row.PromptID, *row.PromptVersion)
		switch {
		case err == nil:
			return doc, DocumentFromVersion, "", nil
		case bud.ErrorCode(err) == bud.ENOTFOUND:
			notes = append(notes, fmt.Sprintf("version %d of prompt %s has been deleted", *row.PromptVersion, *row.PromptID))
		case bud.ErrorCode(err) == bud.EUNAVAILABLE:
			notes = append(notes, "the prompt store (Dapr state store) is unavailable")
		default:
			return nil, "", "", err
		}
	} else {
		notes = append(notes, "the run is of an unsaved document, kept only in the run's history")
	}
	if s.runs == nil {
		notes = append(notes, "no Temporal is configured to read the run's history from")
		return nil, DocumentUnavailable, strings.Join(notes, "; "), nil
	}
	found, err := s.runs.Find(ctx, row.ProjectID, row.ID)
	switch {
	case err == nil && !isAbsent(found.Input.Document):
		return found.Input.Document, DocumentFromHistory, "", nil
	case err == nil, errors.Is(err, runs.ErrNotFound):
		notes = append(notes, "the run's history is no longer in Temporal (its retention has passed)")
	default:
		s.log.WarnContext(ctx, "read run history for its document", "request_id", requestIDFrom(ctx), "run_id", row.ID, "err", err)
		notes = append(notes, "Temporal, which holds the run's history, is unavailable")
	}
	return nil, DocumentUnavailable, strings.Join(notes, "; "), nil
}

// runValidation says how a run's output fared, from its document when
// there is one and otherwise from what its record alone proves.
func runValidation(doc *prompt.Document, row dbsqlc.Run, parsed json.RawMessage) RunValidation {
	var runErr *run.Error
	if !isAbsent(row.Error) {
		_ = json.Unmarshal(row.Error, &runErr) // a malformed error reads as none
	}
	hasParsed := !isAbsent(parsed)
	failed := func() RunValidation { return RunValidation{Status: validationFailed, Message: runErr.Message} }
	switch {
	case hasParsed:
		return RunValidation{Status: validationPassed}
	case runErr != nil && runErr.Code == run.InvalidOutput:
		return failed()
	case doc == nil && runErr != nil && runErr.Code == run.StepLimit:
		return RunValidation{Status: validationUnknown, Message: "the run hit its model call limit, and without its document whether its output is structured is not known"}
	case doc == nil && row.Status == run.StatusCompleted:
		// A structured output that passed is always recorded parsed.
		return RunValidation{Status: validationNotApplicable}
	case doc == nil:
		return RunValidation{Status: validationUnknown, Message: "the run's document is unavailable and its record holds no checked output"}
	case doc.Output.Structured() && runErr != nil && runErr.Code == run.StepLimit:
		return failed()
	}
	return RunValidation{Status: validationNotApplicable}
}

// runDifference is run b against run a.
func runDifference(a, b ComparedRun) (RunDifference, error) {
	d := RunDifference{
		RunID: b.ID, Against: a.ID,
		Usage: RunUsage{
			InputTokens:  b.Usage.InputTokens - a.Usage.InputTokens,
			OutputTokens: b.Usage.OutputTokens - a.Usage.OutputTokens,
			TotalTokens:  b.Usage.TotalTokens - a.Usage.TotalTokens,
		},
		LatencyMS:  b.LatencyMS - a.LatencyMS,
		ModelCalls: b.ModelCalls - a.ModelCalls,
	}
	var err error
	documentNote := func(c ComparedRun) string { return c.DocumentNote }
	if d.Document, err = changeSet("document", a, b, a.Document, b.Document, documentNote); err != nil {
		return d, err
	}
	if d.Input, err = changeSet("input", a, b, a.Input, b.Input, nil); err != nil {
		return d, err
	}
	notRendered := func(ComparedRun) string { return "it failed before its messages were rendered" }
	if d.RenderedMessages, err = changeSet("rendered messages", a, b, a.RenderedMessages, b.RenderedMessages, notRendered); err != nil {
		return d, err
	}
	ta, err := comparableToolCalls(a.ToolCalls)
	if err != nil {
		return d, err
	}
	tb, err := comparableToolCalls(b.ToolCalls)
	if err != nil {
		return d, err
	}
	if d.ToolCalls, err = changeSet("tool calls", a, b, ta, tb, nil); err != nil {
		return d, err
	}
	d.OutputText = outputTextDiff(a, b)
	if d.StructuredOutput, err = structuredDiff(a, b); err != nil {
		return d, err
	}
	return d, nil
}

// changeSet compares av of run a with bv of run b. what names the values
// in a note, and why says why a run has none (nil: "it has none").
func changeSet(what string, a, b ComparedRun, av, bv json.RawMessage, why func(ComparedRun) string) (ChangeSet, error) {
	var notes []string
	for _, side := range []struct {
		run ComparedRun
		v   json.RawMessage
	}{{a, av}, {b, bv}} {
		if !isAbsent(side.v) {
			continue
		}
		reason := "it has none"
		if why != nil {
			reason = why(side.run)
		}
		notes = append(notes, fmt.Sprintf("run %s has no %s: %s", side.run.ID, what, reason))
	}
	if len(notes) > 0 {
		return ChangeSet{Note: strings.Join(notes, "; ")}, nil
	}
	changes, err := jsonChanges(av, bv)
	if err != nil {
		return ChangeSet{}, fmt.Errorf("diff %s: %w", what, err)
	}
	return ChangeSet{Available: true, Changes: changes}, nil
}

// comparableToolCall is what a tool call did, without what differs between
// any two calls (the model's call id, the approval request id derived from
// it, start time, latency, attempts).
type comparableToolCall struct {
	Name         string `json:"name"`
	ServerLabel  string `json:"server_label"`
	ConnectionID string `json:"connection_id,omitempty"`
	Arguments    string `json:"arguments"`
	Output       string `json:"output,omitempty"`
	Error        string `json:"error,omitempty"`
	Approved     *bool  `json:"approved,omitempty"`
	Reason       string `json:"reason,omitempty"`
	Turn         int    `json:"turn"`
}

// comparableToolCalls is a run's recorded tool calls as the list compared.
func comparableToolCalls(raw json.RawMessage) (json.RawMessage, error) {
	var calls []run.ToolCall
	if !isAbsent(raw) {
		if err := json.Unmarshal(raw, &calls); err != nil {
			return nil, fmt.Errorf("read recorded tool calls: %w", err)
		}
	}
	out := make([]comparableToolCall, len(calls))
	for i, c := range calls {
		out[i] = comparableToolCall{
			Name: c.Name, ServerLabel: c.ServerLabel, ConnectionID: c.ConnectionID, Arguments: c.Arguments,
			Output: c.Output, Error: c.Error, Approved: c.Approved, Reason: c.Reason, Turn: c.Turn,
		}
	}
	return json.Marshal(out)
}

// outputTextDiff is the word diff of two runs' output texts.
func outputTextDiff(a, b ComparedRun) TextDiff {
	var notes []string
	for _, c := range []ComparedRun{a, b} {
		if c.Output.Text == "" {
			notes = append(notes, fmt.Sprintf("run %s has no output text", c.ID))
		}
	}
	return TextDiff{Note: strings.Join(notes, "; "), Changes: wordDiff(a.Output.Text, b.Output.Text)}
}

// maxWordTokens bounds the distinct tokens of a word diff: each is coded as
// one rune, and runes stop at U+10FFFF less the surrogates.
const maxWordTokens = utf8.MaxRune - 0x800

// wordDiff diffs two texts word by word: each token (wordTokens) is coded
// as one rune, so that the diff (diff-match-patch over the runes) never
// splits a word.
func wordDiff(a, b string) []TextChange {
	ta, tb := wordTokens(a), wordTokens(b)
	codes := map[string]rune{}
	var texts []string
	encode := func(tokens []string) ([]rune, bool) {
		out := make([]rune, len(tokens))
		for i, tok := range tokens {
			r, ok := codes[tok]
			if !ok {
				if len(texts) >= maxWordTokens {
					return nil, false
				}
				r = tokenRune(len(texts))
				codes[tok] = r
				texts = append(texts, tok)
			}
			out[i] = r
		}
		return out, true
	}
	ra, okA := encode(ta)
	rb, okB := encode(tb)
	if !okA || !okB {
		// Too many distinct words to code: the texts differ wholesale.
		return mergeTextChanges([]TextChange{{TextDelete, a}, {TextInsert, b}})
	}
	diffs := diffmatchpatch.New().DiffMainRunes(ra, rb, false)
	out := make([]TextChange, 0, len(diffs))
	for _, d := range diffs {
		var sb strings.Builder
		for _, r := range d.Text {
			sb.WriteString(texts[tokenIndex(r)])
		}
		op := TextEqual
		switch d.Type {
		case diffmatchpatch.DiffDelete:
			op = TextDelete
		case diffmatchpatch.DiffInsert:
			op = TextInsert
		}
		out = append(out, TextChange{Op: op, Text: sb.String()})
	}
	return mergeTextChanges(out)
}

// tokenRune codes token i as a rune, skipping the surrogates, which are
// not runes a string can hold.
func tokenRune(i int) rune {
	r := rune(i + 1)
	if r >= 0xD800 {
		r += 0x800
	}
	return r
}

func tokenIndex(r rune) int {
	if r >= 0xE000 {
		r -= 0x800
	}
	return int(r) - 1
}

// wordTokens splits s into words (letters, digits, marks, "_"), runs of
// whitespace, and each other character on its own, so that punctuation
// next to a word does not make the word differ.
func wordTokens(s string) []string {
	var out []string
	start, prev := 0, tokenNone
	for i, r := range s {
		class := tokenClass(r)
		if i > 0 && (class != prev || class == tokenOther) {
			out = append(out, s[start:i])
			start = i
		}
		prev = class
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// Classes of the runes of a text, for wordTokens.
const (
	tokenNone = iota
	tokenSpace
	tokenWord
	tokenOther
)

func tokenClass(r rune) int {
	switch {
	case unicode.IsSpace(r):
		return tokenSpace
	case unicode.IsLetter(r), unicode.IsDigit(r), unicode.IsMark(r), r == '_':
		return tokenWord
	}
	return tokenOther
}

// mergeTextChanges drops empty stretches and joins neighbours of one kind.
func mergeTextChanges(in []TextChange) []TextChange {
	out := make([]TextChange, 0, len(in))
	for _, c := range in {
		if c.Text == "" {
			continue
		}
		if n := len(out); n > 0 && out[n-1].Op == c.Op {
			out[n-1].Text += c.Text
			continue
		}
		out = append(out, c)
	}
	return out
}

// structuredDiff compares two runs' parsed outputs by their top-level
// fields, in the first run's order, then the fields only the second has.
func structuredDiff(a, b ComparedRun) (FieldDiff, error) {
	var notes []string
	for _, c := range []ComparedRun{a, b} {
		if isAbsent(c.Output.Parsed) {
			notes = append(notes, fmt.Sprintf("run %s has no structured output", c.ID))
		}
	}
	if len(notes) > 0 {
		return FieldDiff{Note: strings.Join(notes, "; ")}, nil
	}
	fa, okA, err := objectFields(a.Output.Parsed)
	if err != nil {
		return FieldDiff{}, err
	}
	fb, okB, err := objectFields(b.Output.Parsed)
	if err != nil {
		return FieldDiff{}, err
	}
	if !okA || !okB {
		// Not both objects: the whole output is the one field.
		fa, fb = []field{{"", a.Output.Parsed}}, []field{{"", b.Output.Parsed}}
	}
	byName := make(map[string]json.RawMessage, len(fb))
	for _, f := range fb {
		byName[f.name] = f.value
	}
	out := FieldDiff{Available: true, Fields: []FieldChange{}}
	seen := map[string]bool{}
	for _, f := range fa {
		seen[f.name] = true
		path := fieldPointer(f.name, okA && okB)
		old := f.value
		nv, ok := byName[f.name]
		switch {
		case !ok:
			out.Fields = append(out.Fields, FieldChange{Path: path, Status: FieldRemoved, Old: &old})
		case jsonEqual(old, nv):
			out.Fields = append(out.Fields, FieldChange{Path: path, Status: FieldEqual, Value: &old})
		default:
			out.Fields = append(out.Fields, FieldChange{Path: path, Status: FieldChanged, Old: &old, New: &nv})
		}
	}
	for _, f := range fb {
		if !seen[f.name] {
			nv := f.value
			out.Fields = append(out.Fields, FieldChange{Path: fieldPointer(f.name, true), Status: FieldAdded, New: &nv})
		}
	}
	return out, nil
}

// field is one member of a JSON object.
type field struct {
	name  string
	value json.RawMessage
}

// objectFields lists the members of a JSON object in their order; ok is
// false when raw is not an object.
func objectFields(raw json.RawMessage) ([]field, bool, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, false, fmt.Errorf("read structured output: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, false, nil
	}
	var out []field
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, false, fmt.Errorf("read structured output: %w", err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, false, fmt.Errorf("read structured output: %w", err)
		}
		out = append(out, field{name: tok.(string), value: v})
	}
	return out, true, nil
}

// fieldPointer is the JSON Pointer of a top-level member (RFC 6901
// escapes "~" and "/"), or "" for the whole value.
func fieldPointer(name string, member bool) string {
	if !member {
		return ""
	}
	return "/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(name)
}

// jsonEqual reports whether two JSON texts hold the same value, whatever
// their spacing and key order.
func jsonEqual(a, b json.RawMessage) bool {
	changes, err := jsonChanges(a, b)
	return err == nil && len(changes) == 0
}
