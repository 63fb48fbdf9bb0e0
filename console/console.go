// Package console is Bud's web console: a single-page application built
// from the TypeScript in src/ into dist/, which is embedded here so that the
// binary serves it with no files beside it and nothing fetched at run time.
//
// dist/ is committed: `go build` and `go test` work on a fresh clone without
// Node.js, and `make verify` rebuilds it and fails when it differs from the
// sources.
package console

import (
	"bytes"
	"embed"
	"html"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed dist
var dist embed.FS

// reserved are paths the services answer themselves or, for metrics, on
// another listener: never a console page.
var reserved = map[string]bool{"metrics": true, "healthz": true, "readyz": true}

// Options are the addresses the console shows its user; each may be empty.
type Options struct {
	// GatewayURL is where callers reach BudGateway, for the ready-to-copy
	// curl of a deployed prompt; empty shows a placeholder.
	GatewayURL string
	// TemporalUIURL is the Temporal Web UI's page of the runs' namespace
	// (…/namespaces/default); a run's workflow is at
	// TemporalUIURL/workflows/<run id>. Empty shows no link.
	TemporalUIURL string
}

// Handler serves the console: a file of the bundle at its path, and
// index.html for every other path, so that the application's own routes
// (/projects/…, /runs/…) survive a reload. It answers GET and HEAD only;
// the caller routes /api elsewhere. A path that names a file (it has an
// extension) missing from the bundle, and the paths of the services'
// own endpoints (reserved), are 404: a missing asset or a scrape of
// /metrics gets no page.
func Handler(o Options) http.Handler {
	files, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // dist is embedded: only a broken build gets here
	}
	raw, err := fs.ReadFile(files, "index.html")
	if err != nil {
		panic(err)
	}
	meta := `<meta name="bud-gateway" content="` + html.EscapeString(o.GatewayURL) + `">` +
		`<meta name="bud-temporal-ui" content="` + html.EscapeString(o.TemporalUIURL) + `">`
	index := bytes.Replace(raw, []byte("<!--bud-config-->"), []byte(meta), 1)
	static := http.FileServerFS(files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
		if name != "" && name != "index.html" {
			if st, err := fs.Stat(files, name); err == nil && !st.IsDir() {
				// Bundle names do not change with their content, so the
				// browser asks again each time and gets a 304 when unchanged.
				w.Header().Set("Cache-Control", "no-cache")
				static.ServeHTTP(w, r)
				return
			}
		}
		if path.Ext(name) != "" || reserved[name] {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
		http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(index))
	})
}
