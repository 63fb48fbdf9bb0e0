package evaluation

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// Validation outcomes of a run's structured output.
const (
	ValidationPassed = "passed"
	ValidationFailed = "failed"
	// ValidationNotApplicable: a text output, or a run that ended before
	// a reply was checked.
	ValidationNotApplicable = "not_applicable"
)

// RunSource is the source the runs of an evaluation are recorded with.
const RunSource = "evaluation"

// Failure codes of a run that mean its structured output stayed invalid.
const (
	codeInvalidOutput = "InvalidOutput"
	codeStepLimit     = "StepLimit"
)

// Run is a finished run as scoring reads it.
type Run struct {
	// Status is the run's status: completed, failed or incomplete.
	Status string
	// Output is nil when the run produced none.
	Output *Output
	// ErrorCode is the run's failure type, "" when it did not fail.
	ErrorCode string
	// Structured says the candidate's output is structured.
	Structured bool
}

// Verdict is how one run of one row fared.
type Verdict struct {
	Validation string
	// Passed: the run completed, its output is not invalid, and every
	// check passed.
	Passed bool
	Checks []CheckResult
	// Compared is the output candidates are compared by (Output.Compared);
	// nil when there is none.
	Compared json.RawMessage
}

// Judge scores run r against the row's checks cs.
func Judge(cs *Checks, r Run) Verdict {
	v := Verdict{Validation: ValidationNotApplicable}
	if r.Structured {
		switch {
		case r.Output != nil && r.Output.structured():
			v.Validation = ValidationPassed
		case r.ErrorCode == codeInvalidOutput || r.ErrorCode == codeStepLimit:
			v.Validation = ValidationFailed
		}
	}
	if r.Output == nil {
		v.Checks = cs.Fail(fmt.Sprintf("the run ended %s without output", r.Status))
	} else {
		v.Checks = cs.Run(*r.Output)
		v.Compared = r.Output.Compared()
	}
	v.Passed = r.Status == "completed" && v.Validation != ValidationFailed
	for _, c := range v.Checks {
		v.Passed = v.Passed && c.Passed
	}
	return v
}

// RunID is the run id (workflow id and response id) of the run of row
// against candidate in evaluation: fixed, so that an evaluation that
// starts it again finds the run that exists instead of making another.
// It has no underscore after "resp_", as a response id of a first turn.
func RunID(evaluation uuid.UUID, row, candidate int) string {
	return fmt.Sprintf("resp_eval%sr%dc%d", strings.ReplaceAll(evaluation.String(), "-", ""), row, candidate)
}

// WorkflowName is the registered name of the evaluation workflow.
const WorkflowName = "Evaluation"

// WorkflowID is the workflow id of evaluation.
func WorkflowID(evaluation uuid.UUID) string {
	return "evaluation-" + evaluation.String()
}
