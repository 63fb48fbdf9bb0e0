package response

// Stream event types: the event name of a server-sent event and the Type
// of its data.
const (
	EventCreated                    = "response.created"
	EventInProgress                 = "response.in_progress"
	EventCompleted                  = "response.completed"
	EventFailed                     = "response.failed"
	EventIncomplete                 = "response.incomplete"
	EventOutputItemAdded            = "response.output_item.added"
	EventOutputItemDone             = "response.output_item.done"
	EventContentPartAdded           = "response.content_part.added"
	EventContentPartDone            = "response.content_part.done"
	EventOutputTextDelta            = "response.output_text.delta"
	EventOutputTextDone             = "response.output_text.done"
	EventFunctionCallArgumentsDelta = "response.function_call_arguments.delta"
	EventFunctionCallArgumentsDone  = "response.function_call_arguments.done"
	EventMCPCallInProgress          = "response.mcp_call.in_progress"
	EventMCPCallCompleted           = "response.mcp_call.completed"
	EventMCPCallFailed              = "response.mcp_call.failed"
)

// Event is one event of a Responses stream. Every event type embeds
// EventHeader, through which the stream's writer stamps it.
type Event interface {
	Header() *EventHeader
}

// EventHeader starts every stream event: its type and its place in the
// stream, counted from 0.
type EventHeader struct {
	Type           string `json:"type"`
	SequenceNumber int64  `json:"sequence_number"`
}

// Header returns h itself, for the writer to stamp.
func (h *EventHeader) Header() *EventHeader { return h }

// ResponseEvent carries the Response as it stands: EventCreated,
// EventInProgress, and the last event, EventCompleted, EventFailed or
// EventIncomplete.
type ResponseEvent struct {
	EventHeader
	Response *Response `json:"response"`
}

// OutputItemEvent opens (EventOutputItemAdded) or closes
// (EventOutputItemDone) the output item at OutputIndex.
type OutputItemEvent struct {
	EventHeader
	OutputIndex int        `json:"output_index"`
	Item        OutputItem `json:"item"`
}

// ContentPartEvent opens (EventContentPartAdded) or closes
// (EventContentPartDone) a message's content part.
type ContentPartEvent struct {
	EventHeader
	ItemID       string     `json:"item_id"`
	OutputIndex  int        `json:"output_index"`
	ContentIndex int        `json:"content_index"`
	Part         OutputText `json:"part"`
}

// OutputTextDeltaEvent adds Delta to a message's text
// (EventOutputTextDelta). Logprobs is always empty.
type OutputTextDeltaEvent struct {
	EventHeader
	ItemID       string `json:"item_id"`
	OutputIndex  int    `json:"output_index"`
	ContentIndex int    `json:"content_index"`
	Delta        string `json:"delta"`
	Logprobs     []any  `json:"logprobs"`
}

// OutputTextDoneEvent gives a message's whole text (EventOutputTextDone).
// Logprobs is always empty.
type OutputTextDoneEvent struct {
	EventHeader
	ItemID       string `json:"item_id"`
	OutputIndex  int    `json:"output_index"`
	ContentIndex int    `json:"content_index"`
	Text         string `json:"text"`
	Logprobs     []any  `json:"logprobs"`
}

// FunctionCallArgumentsDeltaEvent adds Delta to a function call's
// arguments (EventFunctionCallArgumentsDelta).
type FunctionCallArgumentsDeltaEvent struct {
	EventHeader
	ItemID      string `json:"item_id"`
	OutputIndex int    `json:"output_index"`
	Delta       string `json:"delta"`
}

// FunctionCallArgumentsDoneEvent gives a function call's name and whole
// arguments (EventFunctionCallArgumentsDone).
type FunctionCallArgumentsDoneEvent struct {
	EventHeader
	ItemID      string `json:"item_id"`
	OutputIndex int    `json:"output_index"`
	Name        string `json:"name"`
	Arguments   string `json:"arguments"`
}

// MCPCallEvent reports a connection tool call's progress:
// EventMCPCallInProgress, EventMCPCallCompleted or EventMCPCallFailed.
type MCPCallEvent struct {
	EventHeader
	ItemID      string `json:"item_id"`
	OutputIndex int    `json:"output_index"`
}
