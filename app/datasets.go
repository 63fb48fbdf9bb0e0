package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/budhq/bud"
	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/evaluation"
	"github.com/budhq/bud/run"
)

// Bounds of datasets.
const (
	// maxDatasetBody bounds a request that carries rows: a JSON body or a
	// JSON Lines upload.
	maxDatasetBody = 32 << 20
	maxDatasetName = 200
	maxDatasetDesc = 2000
	// defaultFromRuns and maxFromRuns bound the runs a dataset is made of.
	defaultFromRuns = 100
	maxFromRuns     = 10_000
)

// ndjsonType is the media type of a JSON Lines upload: one row per line.
const ndjsonType = "application/x-ndjson"

// DatasetRowInput is one row as a caller gives it: the input (text or
// variables), and optionally the expected output and checks.
type DatasetRowInput struct {
	Text      *string        `json:"text"`
	Variables map[string]any `json:"variables"`
	// ExpectedOutput is a string for a text output, any JSON value for a
	// structured one; the output must equal it (check expected_output).
	ExpectedOutput json.RawMessage    `json:"expected_output"`
	Checks         []evaluation.Check `json:"checks"`
}

// fromRuns makes a dataset of past runs of one prompt.
type fromRuns struct {
	PromptID string     `json:"prompt_id"`
	Since    *time.Time `json:"since"`
	Until    *time.Time `json:"until"`
	// Status defaults to completed.
	Status string `json:"status"`
	Limit  *int   `json:"limit"`
}

// createDatasetRequest is the JSON body of POST …/datasets.
type createDatasetRequest struct {
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Rows        []DatasetRowInput `json:"rows"`
	FromRuns    *fromRuns         `json:"from_runs"`
}

// addRowsRequest is the JSON body of POST /api/datasets/{id}/rows.
type addRowsRequest struct {
	Rows []DatasetRowInput `json:"rows"`
}

// Dataset is a dataset as the API shows it.
type Dataset struct {
	ID          uuid.UUID `json:"id"`
	ProjectID   uuid.UUID `json:"project_id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	RowCount    int32     `json:"row_count"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// DatasetRow is a stored row.
type DatasetRow struct {
	Position       int32           `json:"position"`
	Text           *string         `json:"text,omitempty"`
	Variables      json.RawMessage `json:"variables,omitempty"`
	ExpectedOutput json.RawMessage `json:"expected_output"`
	Checks         json.RawMessage `json:"checks"`
	// RunID is the past run the row was made from.
	RunID *string `json:"run_id"`
}

// datasetWithRows is a dataset with one page of its rows.
type datasetWithRows struct {
	Dataset
	Rows page[DatasetRow] `json:"rows"`
}

func datasetFromRow(d dbsqlc.Dataset) Dataset {
	return Dataset{ID: d.ID, ProjectID: d.ProjectID, Name: d.Name, Description: d.Description, RowCount: d.RowCount, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
}

// newRow is a checked row ready to store.
type newRow struct {
	text      *string
	variables []byte
	expected  []byte
	checks    []byte
	runID     *string
}

// checkRows checks the rows of a request, keyed rows[i].…, compiling each
// row's checks; every problem is reported at once.
func checkRows(rows []DatasetRowInput) ([]newRow, error) {
	var compiler evaluation.Compiler
	var p bud.Problems
	out := make([]newRow, 0, len(rows))
	for i, r := range rows {
		at := fmt.Sprintf("rows[%d].", i)
		switch {
		case r.Text != nil && r.Variables != nil:
			p.Add(at+"variables", "give text or variables, not both")
		case r.Text == nil && r.Variables == nil:
			p.Add(at+"text", "is required (or variables, for a structured input)")
		}
		if _, err := compiler.Compile(r.Checks, r.ExpectedOutput, at); err != nil {
			for k, v := range bud.ErrorFields(err) {
				p.Add(k, "%s", v)
			}
		}
		nr := newRow{text: r.Text}
		if r.Variables != nil {
			nr.variables, _ = json.Marshal(r.Variables)
		}
		if !isAbsent(r.ExpectedOutput) {
			nr.expected = r.ExpectedOutput
		}
		checks := r.Checks
		if checks == nil {
			checks = []evaluation.Check{}
		}
		nr.checks, _ = json.Marshal(checks)
		out = append(out, nr)
	}
	return out, p.Err()
}

// insertRows appends rows to the dataset, locked by the caller in tx, and
// returns the dataset as it now stands.
func insertRows(ctx context.Context, tx pgx.Tx, d dbsqlc.Dataset, rows []newRow) (dbsqlc.Dataset, error) {
	q := dbsqlc.New(tx)
	params := make([]dbsqlc.InsertDatasetRowsParams, len(rows))
	for i, r := range rows {
		params[i] = dbsqlc.InsertDatasetRowsParams{
			DatasetID: d.ID, Position: d.RowCount + int32(i), Text: r.text, Variables: r.variables,
			ExpectedOutput: r.expected, Checks: r.checks, RunID: r.runID,
		}
	}
	if len(params) > 0 {
		if _, err := q.InsertDatasetRows(ctx, params); err != nil {
			return d, err
		}
	}
	return q.SetDatasetRowCount(ctx, dbsqlc.SetDatasetRowCountParams{ID: d.ID, RowCount: d.RowCount + int32(len(rows))})
}

// readRows reads a body that carries rows, up to maxDatasetBody: with
// Content-Type application/x-ndjson one row per line into rows, and it
// reports true; otherwise a JSON object into v.
func (s *server) readRows(w http.ResponseWriter, r *http.Request, v any, rows *[]DatasetRowInput) (lines bool, err error) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != ndjsonType {
		big := *s
		big.maxBody = maxDatasetBody
		return false, big.readJSON(w, r, v)
	}
	*rows, err = readRowLines(http.MaxBytesReader(w, r.Body, maxDatasetBody))
	return true, err
}

// readDatasetRequest reads a create request: JSON, or JSON Lines rows with
// the name and description in the query (?name=&description=).
func (s *server) readDatasetRequest(w http.ResponseWriter, r *http.Request) (createDatasetRequest, error) {
	var in createDatasetRequest
	lines, err := s.readRows(w, r, &in, &in.Rows)
	if lines {
		in.Name, in.Description = r.URL.Query().Get("name"), r.URL.Query().Get("description")
	}
	return in, err
}

// readRowLines reads JSON Lines rows; blank lines are skipped, and a line
// is named by its row index (rows[i]) as in a JSON body.
func readRowLines(body io.Reader) ([]DatasetRowInput, error) {
	var rows []DatasetRowInput
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), maxDatasetBody)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var row DatasetRowInput
		at := fmt.Sprintf("rows[%d]", len(rows))
		if err := unmarshalStrict(line, &row, at+"."); err != nil {
			if bud.ErrorFields(err) != nil {
				return nil, err
			}
			// A line that is not JSON has no field to name: the row is.
			return nil, fieldError(at, bud.ErrorMessage(err))
		}
		rows = append(rows, row)
	}
	var tooLarge *http.MaxBytesError
	if err := sc.Err(); errors.As(err, &tooLarge) {
		return nil, bud.Errorf(bud.ETOOLARGE, "the request body must be at most %d bytes", tooLarge.Limit)
	} else if err != nil {
		return nil, bud.Errorf(bud.EINVALID, "the request body could not be read")
	}
	return rows, nil
}

// createDataset makes a dataset of the project from rows (JSON or JSON
// Lines) or from past runs.
func (s *server) createDataset(w http.ResponseWriter, r *http.Request) {
	project := projectFrom(r)
	in, err := s.readDatasetRequest(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var p bud.Problems
	switch n := utf8.RuneCountInString(in.Name); {
	case n == 0:
		p.Add("name", "is required")
	case n > maxDatasetName:
		p.Add("name", "must be at most %d characters", maxDatasetName)
	}
	if utf8.RuneCountInString(in.Description) > maxDatasetDesc {
		p.Add("description", "must be at most %d characters", maxDatasetDesc)
	}
	if in.FromRuns != nil && in.Rows != nil {
		p.Add("from_runs", "give rows or from_runs, not both")
	}
	if err := p.Err(); err != nil {
		s.writeError(w, r, err)
		return
	}
	var rows []newRow
	if in.FromRuns != nil {
		rows, err = s.rowsFromRuns(r.Context(), project.ID, *in.FromRuns)
	} else {
		rows, err = checkRows(in.Rows)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var d dbsqlc.Dataset
	err = pgx.BeginFunc(r.Context(), s.pool, func(tx pgx.Tx) error {
		var err error
		if d, err = dbsqlc.New(tx).CreateDataset(r.Context(), dbsqlc.CreateDatasetParams{ProjectID: project.ID, Name: in.Name, Description: in.Description}); err != nil {
			return err
		}
		d, err = insertRows(r.Context(), tx, d, rows)
		return err
	})
	if err != nil {
		s.writeError(w, r, saveError(err, "create dataset", "datasets_project_name_key", "dataset", in.Name))
		return
	}
	writeJSON(w, http.StatusCreated, datasetFromRow(d))
}

// rowsFromRuns makes a row of each past run: its input the row's input,
// its output the expected output.
func (s *server) rowsFromRuns(ctx context.Context, projectID uuid.UUID, f fromRuns) ([]newRow, error) {
	var p bud.Problems
	promptID, err := uuid.Parse(f.PromptID)
	if err != nil {
		p.Add("from_runs.prompt_id", "is required: a prompt's UUID")
	}
	status := f.Status
	switch status {
	case "":
		status = run.StatusCompleted
	case run.StatusCompleted, run.StatusFailed, run.StatusIncomplete:
	default:
		p.Add("from_runs.status", "must be one of completed, failed, incomplete")
	}
	limit := defaultFromRuns
	if f.Limit != nil {
		limit = *f.Limit
		if limit < 1 || limit > maxFromRuns {
			p.Add("from_runs.limit", "must be between 1 and %d", maxFromRuns)
		}
	}
	if f.Since != nil && f.Until != nil && !f.Until.After(*f.Since) {
		p.Add("from_runs.until", "must be after since")
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	runs, err := s.q.ListRunsForDataset(ctx, dbsqlc.ListRunsForDatasetParams{
		ProjectID: projectID, PromptID: &promptID, Status: status,
		CreatedAfter: f.Since, CreatedBefore: f.Until, MaxRows: int32(limit),
	})
	if err != nil {
		return nil, bud.Internal("list runs for dataset", err)
	}
	rows := make([]newRow, 0, len(runs))
	for _, rec := range runs {
		var in activities.RunInput
		if err := json.Unmarshal(rec.Input, &in); err != nil {
			return nil, bud.Internal("decode run input", err)
		}
		id := rec.ID
		nr := newRow{checks: []byte("[]"), runID: &id}
		if in.Variables != nil {
			nr.variables, _ = json.Marshal(in.Variables)
		} else {
			text := in.Text
			nr.text = &text
		}
		if len(rec.Output) > 0 {
			var out activities.RunOutput
			if err := json.Unmarshal(rec.Output, &out); err != nil {
				return nil, bud.Internal("decode run output", err)
			}
			nr.expected = evaluation.Output{Text: out.Text, Parsed: out.Parsed}.Compared()
		}
		rows = append(rows, nr)
	}
	return rows, nil
}

// listDatasets answers the project's datasets, newest first.
func (s *server) listDatasets(w http.ResponseWriter, r *http.Request) {
	project := projectFrom(r)
	limit, offset, err := pageParams(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rows, err := s.q.ListDatasets(r.Context(), dbsqlc.ListDatasetsParams{ProjectID: project.ID, MaxRows: limit, SkipRows: offset})
	if err != nil {
		s.writeError(w, r, bud.Internal("list datasets", err))
		return
	}
	total, err := s.q.CountDatasets(r.Context(), project.ID)
	if err != nil {
		s.writeError(w, r, bud.Internal("count datasets", err))
		return
	}
	out := page[Dataset]{Data: make([]Dataset, 0, len(rows)), Total: total, Limit: limit, Offset: offset}
	for _, d := range rows {
		out.Data = append(out.Data, datasetFromRow(d))
	}
	writeJSON(w, http.StatusOK, out)
}

type datasetKey struct{}

// loadDataset puts the dataset named by {dataset_id} in the context, or
// answers 404.
func (s *server) loadDataset(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(r, "dataset_id")
		if !ok {
			s.writeError(w, r, notFound("dataset"))
			return
		}
		d, err := s.q.GetDataset(r.Context(), id)
		if err != nil {
			s.writeError(w, r, lookupError(err, "dataset", "get dataset"))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), datasetKey{}, d)))
	})
}

func datasetFrom(r *http.Request) dbsqlc.Dataset {
	return r.Context().Value(datasetKey{}).(dbsqlc.Dataset)
}

// getDataset answers a dataset with a page of its rows (?limit=&offset=).
func (s *server) getDataset(w http.ResponseWriter, r *http.Request) {
	d := datasetFrom(r)
	limit, offset, err := pageParams(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rows, err := s.q.ListDatasetRows(r.Context(), dbsqlc.ListDatasetRowsParams{DatasetID: d.ID, FirstPosition: offset, MaxRows: limit})
	if err != nil {
		s.writeError(w, r, bud.Internal("list dataset rows", err))
		return
	}
	out := datasetWithRows{Dataset: datasetFromRow(d), Rows: page[DatasetRow]{Data: make([]DatasetRow, 0, len(rows)), Total: int64(d.RowCount), Limit: limit, Offset: offset}}
	for _, row := range rows {
		out.Rows.Data = append(out.Rows.Data, DatasetRow{
			Position: row.Position, Text: row.Text, Variables: row.Variables,
			ExpectedOutput: nullable(row.ExpectedOutput), Checks: row.Checks, RunID: row.RunID,
		})
	}
	writeJSON(w, http.StatusOK, out)
}

// nullable is raw, or JSON null when there is none.
func nullable(raw []byte) json.RawMessage {
	if len(raw) == 0 {
		return json.RawMessage("null")
	}
	return raw
}

// addDatasetRows appends rows (JSON {rows} or JSON Lines) to a dataset.
func (s *server) addDatasetRows(w http.ResponseWriter, r *http.Request) {
	d := datasetFrom(r)
	var in addRowsRequest
	if _, err := s.readRows(w, r, &in, &in.Rows); err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(in.Rows) == 0 {
		s.writeError(w, r, fieldError("rows", "must hold at least one row"))
		return
	}
	rows, err := checkRows(in.Rows)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	err = pgx.BeginFunc(r.Context(), s.pool, func(tx pgx.Tx) error {
		locked, err := dbsqlc.New(tx).LockDataset(r.Context(), d.ID)
		if err != nil {
			return err
		}
		d, err = insertRows(r.Context(), tx, locked, rows)
		return err
	})
	if err != nil {
		s.writeError(w, r, lookupError(err, "dataset", "add dataset rows"))
		return
	}
	writeJSON(w, http.StatusOK, datasetFromRow(d))
}

// deleteDataset deletes a dataset with its rows and evaluations; 409 while
// an evaluation of it runs.
func (s *server) deleteDataset(w http.ResponseWriter, r *http.Request) {
	d := datasetFrom(r)
	err := pgx.BeginFunc(r.Context(), s.pool, func(tx pgx.Tx) error {
		q := dbsqlc.New(tx)
		if _, err := q.LockDataset(r.Context(), d.ID); err != nil {
			return lookupError(err, "dataset", "lock dataset")
		}
		running, err := q.DatasetHasRunningEvaluation(r.Context(), d.ID)
		if err != nil {
			return bud.Internal("check running evaluations", err)
		}
		if running {
			return bud.Errorf(bud.ECONFLICT, "an evaluation of the dataset is running; cancel it or wait for it to end")
		}
		if _, err := q.DeleteDataset(r.Context(), d.ID); err != nil {
			return bud.Internal("delete dataset", err)
		}
		return nil
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
