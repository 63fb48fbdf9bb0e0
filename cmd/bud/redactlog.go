package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/budhq/bud"
)

// redactingHandler passes records to its handler with the URLs in them
// redacted (bud.RedactURLs): in the message, and in every string, error
// and fmt.Stringer value, at any depth of groups, whether it comes with
// the record or from Logger.With. Errors quote URLs whole, userinfo and
// query included (net/http's `Post "https://user:pw@host/p?token=…"`), and
// every service logs errors: the Temporal SDK's, daprd's and net/http's
// lines go through the same logger.
type redactingHandler struct{ next slog.Handler }

// newRedactingHandler wraps next.
func newRedactingHandler(next slog.Handler) slog.Handler { return redactingHandler{next: next} }

func (h redactingHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

func (h redactingHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, bud.RedactURLs(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h redactingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = redactAttr(a)
	}
	return redactingHandler{next: h.next.WithAttrs(out)}
}

func (h redactingHandler) WithGroup(name string) slog.Handler {
	return redactingHandler{next: h.next.WithGroup(name)}
}

// redactAttr is a with its value's URLs redacted. A value is resolved
// first (slog.LogValuer), since what it resolves to is what is printed. A
// value whose text holds no URL is kept as it is, so that handlers print
// it as they would have.
func redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, bud.RedactURLs(v.String()))
	case slog.KindGroup:
		group := v.Group()
		out := make([]slog.Attr, len(group))
		for i, g := range group {
			out[i] = redactAttr(g)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error, fmt.Stringer:
			// fmt, not Error or String: it survives a nil receiver.
			s := fmt.Sprint(x)
			if r := bud.RedactURLs(s); r != s {
				return slog.String(a.Key, r)
			}
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
