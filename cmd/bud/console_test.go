package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// chromiumPath is Debian's Chromium, which the browser tests drive; .ci/run
// installs it when it is missing. No browser is ever downloaded.
const chromiumPath = "/usr/bin/chromium"

// browser starts a headless Chromium with a fresh profile and returns a
// context whose actions run in its one tab.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the console's browser test needs Debian's chromium (apt-get install chromium): %v", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelC(); cancelA() })
	// The first action starts the browser, which lives as long as the
	// context of that action: this one, not a step's shorter one.
	require.NoError(t, chromedp.Do(ctx))
	return ctx
}

// screenshot saves the page as a JPEG into BUD_CONSOLE_SCREENSHOTS, when it
// is set (make screenshots), for the README.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("BUD_CONSOLE_SCREENSHOTS")
	if dir == "" {
		return
	}
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(60))
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".jpg"), buf, 0o644))
}

// setSelect chooses an option of a select as a person does, so that its
// change event fires.
func setSelect(sel, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { const s = document.querySelector(%q); s.value = %q; s.dispatchEvent(new Event("change", {bubbles: true})); })()`, sel, value))
}

// do runs the actions, each group within 30 seconds; on failure it shows
// what the page said.
func do(t *testing.T, ctx context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for i, a := range actions {
		if _, err := chromedp.Run(sctx, a); err != nil {
			text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.pathname + "\n" + document.body.innerText`))
			t.Fatalf("action %d: %v\npage:\n%s", i+1, err, text)
		}
	}
}

// clearField empties an input or textarea, with the input event a person's
// deleting would fire.
func clearField(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.value = ""; e.dispatchEvent(new Event("input", {bubbles: true})); })()`, sel))
}

// textOf waits for sel and reads its text.
func textOf(ctx context.Context, t *testing.T, sel string) string {
	t.Helper()
	do(t, ctx, chromedp.WaitVisible(sel))
	s, err := chromedp.Run(ctx, chromedp.Text(sel))
	require.NoError(t, err)
	return s
}

// TestConsole drives the web console in a real Chromium against `bud dev`:
// sign in, create a project, a model deployment on the stand-in and a key,
// author a prompt (a validation error shown at its field first), deploy it
// and call the curl the console shows; then run two compare windows through
// the sequential form, whose constraint the browser refuses, and find the
// run in the run history; then deploy the prompt into another project
// through "Deploy a prompt", mapping its model deployment there.
func TestConsole(t *testing.T) {
	env := newDevEnv(t)
	env.start(t)
	tokenRaw, err := os.ReadFile(filepath.Join(env.dataDir, "admin-token"))
	require.NoError(t, err)
	token := strings.TrimSpace(string(tokenRaw))
	base := "http://" + env.app
	ctx := browser(t)

	// Sign in; the token stays in the tab's session storage.
	do(t, ctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(`input[name=token]`),
	)
	screenshot(t, ctx, "signin")
	do(t, ctx,
		chromedp.SendKeys(`input[name=token]`, token),
		chromedp.Click(`button[type=submit]`),
		chromedp.WaitVisible(`input[aria-label="New project name"]`),
	)

	// How soon the home page is interactive after a fresh navigation.
	do(t, ctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(`input[aria-label="New project name"]`),
	)
	interactiveMS, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`performance.now()`))
	require.NoError(t, err)
	t.Logf("home page interactive %.0f ms after navigation start", interactiveMS)

	// A client route survives a reload: BudApp serves index.html for it,
	// while an unknown /api path stays the API's JSON 404.
	resp, err := http.Get(base + "/projects/whatever")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Type"), "text/html")
	resp, err = http.Get(base + "/api/nope")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	// An empty project.
	do(t, ctx,
		chromedp.SendKeys(`input[aria-label="New project name"]`, "demo"),
		chromedp.Click(`//button[text()="Create project"]`),
		chromedp.WaitVisible(`//button[text()="Create deployment"]`),
	)
	// Create deployment asks model or prompt; a model on the stand-in.
	do(t, ctx,
		chromedp.Click(`//button[text()="Create deployment"]`),
		chromedp.Click(`//button[text()="Model"]`),
		chromedp.SendKeys(`input[name=name]`, "echo"),
		chromedp.SendKeys(`input[name=base_url]`, "http://"+env.standIn+"/v1"),
		chromedp.SendKeys(`input[name=model]`, "stand-in"),
		chromedp.SendKeys(`input[name=api_key]`, "provider-secret"),
	)
	screenshot(t, ctx, "deployment")
	do(t, ctx,
		chromedp.Click(`//form//button[text()="Create deployment"]`),
		chromedp.WaitVisible(`//td[text()="echo"]`),
	)
	require.Equal(t, "set", textOf(ctx, t, `//tr[td[text()="echo"]]/td[4]`), "the provider key is stored, never shown")
	screenshot(t, ctx, "project")

	// A key: the secret is shown once.
	do(t, ctx,
		chromedp.Click(`//a[text()="API keys"]`),
		chromedp.SendKeys(`input[aria-label="New key name"]`, "laptop"),
		chromedp.Click(`//button[text()="Create API key"]`),
	)
	secret := textOf(ctx, t, `.secret-value`)
	require.True(t, strings.HasPrefix(secret, "bud-"), secret)

	// A new prompt. A retry limit above the maximum is refused by the API
	// and shown next to its field.
	do(t, ctx,
		chromedp.Click(`//a[text()="Prompts"]`),
		chromedp.Click(`//a[text()="New prompt"]`),
		chromedp.WaitVisible(`input[name=prompt_name]`),
		chromedp.SendKeys(`input[name=prompt_name]`, "greeter"),
		chromedp.Poll[chromedp.Void](`document.querySelector("select[name=deployment]")?.value === "echo" || null`),
		chromedp.SendKeys(`textarea[name=system_prompt]`, "You greet people."),
		clearField(`textarea[aria-label="Message 1 content"]`),
		chromedp.SendKeys(`textarea[aria-label="Message 1 content"]`, "Hello {{ input }}"),
		clearField(`input[name=llm_retry_limit]`),
		chromedp.SendKeys(`input[name=llm_retry_limit]`, "99"),
		chromedp.Click(`//button[text()="Save prompt"]`),
	)
	msg := textOf(ctx, t, `.doc [data-path="llm_retry_limit"]`)
	require.NotEmpty(t, msg)
	t.Logf("llm_retry_limit 99: %q", msg)
	screenshot(t, ctx, "validation-error")
	do(t, ctx,
		clearField(`input[name=llm_retry_limit]`),
		chromedp.SendKeys(`input[name=llm_retry_limit]`, "2"),
		chromedp.Click(`//button[text()="Save prompt"]`),
		chromedp.WaitVisible(`//button[text()="Save new version"]`),
	)
	promptPath, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.pathname`))
	require.NoError(t, err)
	promptID := strings.TrimPrefix(promptPath, "/prompts/")
	require.NotEmpty(t, promptID)

	// Deploy with settings; the console shows the curl, and it answers.
	do(t, ctx,
		chromedp.Click(`//button[text()="Deploy…"]`),
		chromedp.WaitVisible(`input[name=deploy_name]`),
		clearField(`input[name=deploy_name]`),
		chromedp.SendKeys(`input[name=deploy_name]`, "greeter-live"),
		chromedp.Click(`//form[@aria-label="Deploy"]//button[text()="Deploy"]`),
	)
	curl := textOf(ctx, t, `pre.curl`)
	screenshot(t, ctx, "deployed")
	require.Contains(t, curl, "http://"+env.gateway+"/v1/responses")
	cmd := exec.Command("bash", "-c", strings.ReplaceAll(strings.ReplaceAll(curl, "$BUD_API_KEY", secret), "…", "Ada"))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	var answer struct {
		Status string `json:"status"`
		Output []struct {
			Content []struct {
				Text string `json:"text"`
			} `json:"content"`
		} `json:"output"`
	}
	require.NoError(t, json.Unmarshal(out, &answer), "%s", out)
	require.Equal(t, "completed", answer.Status, "%s", out)
	require.Equal(t, "Hello Ada", answer.Output[0].Content[0].Text)

	// A version with a typed input: a short string, a switch, a choice.
	api := apiClient{t: t, base: base, token: token}
	api.do("POST", "/api/prompts/"+promptID+"/versions", map[string]any{
		"note": "typed input",
		"document": map[string]any{
			"deployment": "echo",
			"messages":   []any{map[string]any{"role": "user", "content": "Hello {{ name }}, formal={{ formal }}, tone={{ tone }}"}},
			"input": map[string]any{"type": "structured", "variables": []any{
				map[string]any{"name": "name", "type": "string", "required": true, "validation": map[string]any{"basic": map[string]any{"max_length": 5}}},
				map[string]any{"name": "formal", "type": "boolean"},
				map[string]any{"name": "tone", "type": "enum", "options": []string{"warm", "dry"}},
			}},
		},
	}, http.StatusCreated, nil)

	// Load version 2, add a compare window whose message differs, run both.
	do(t, ctx,
		chromedp.Reload(),
		chromedp.Poll[chromedp.Void](`document.querySelector('select[aria-label="Version"] option[value="2"]') || null`),
		setSelect(`select[aria-label="Version"]`, "2"),
		chromedp.Poll[chromedp.Void](`document.querySelector('textarea[aria-label="Message 1 content"]').value.includes("formal") || null`),
		chromedp.Click(`button[aria-label="Add compare window"]`),
		chromedp.WaitVisible(`section[aria-label="Window 2"]`),
		clearField(`section[aria-label="Window 2"] textarea[aria-label="Message 1 content"]`),
		chromedp.SendKeys(`section[aria-label="Window 2"] textarea[aria-label="Message 1 content"]`, "Bye {{ name }}"),
		chromedp.Click(`//button[text()="Run"]`),
		chromedp.WaitVisible(`form[aria-label="Run input"]`),
	)
	// Step 1: the string, whose max_length the browser enforces.
	require.Equal(t, "Name *", textOf(ctx, t, `form[aria-label="Run input"] .labeled > span`))
	do(t, ctx,
		chromedp.SendKeys(`#step-name`, "Adalbert"),
		chromedp.Click(`//button[text()="Next"]`),
	)
	require.Equal(t, "at most 5 characters", textOf(ctx, t, `form[aria-label="Run input"] .field-error`))
	screenshot(t, ctx, "run-form")
	do(t, ctx,
		clearField(`#step-name`),
		chromedp.SendKeys(`#step-name`, "Ada"),
		chromedp.Click(`//button[text()="Next"]`),
		// Step 2: the switch.
		chromedp.WaitVisible(`#step-formal[role=switch]`),
		chromedp.Click(`#step-formal`),
		chromedp.Click(`//button[text()="Next"]`),
		// Step 3: the choice, then submit.
		chromedp.WaitVisible(`select#step-tone`),
		setSelect(`select#step-tone`, "dry"),
		chromedp.Click(`//button[text()="Submit"]`),
		chromedp.WaitVisible(`section[aria-label="Window 2"] [aria-label="Result"]`),
		chromedp.WaitVisible(`section[aria-label="Window 1"] [aria-label="Result"]`),
	)
	out1 := textOf(ctx, t, `section[aria-label="Window 1"] pre.output`)
	out2 := textOf(ctx, t, `section[aria-label="Window 2"] pre.output`)
	require.Equal(t, "Hello Ada, formal=True, tone=dry", out1)
	require.Equal(t, "Bye Ada", out2)
	screenshot(t, ctx, "compare")

	// The run from window 1 in the run history, and its detail page.
	href, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`section[aria-label="Window 1"] [aria-label="Result"] a[href^="/runs/"]`), "href"))
	require.NoError(t, err)
	runHref := href.Value
	require.NotEmpty(t, runHref)
	do(t, ctx,
		chromedp.Navigate(base+runHref),
		chromedp.WaitVisible(`//h3[text()="Rendered messages"]`),
	)
	require.Contains(t, textOf(ctx, t, `pre.output`), "Hello Ada")
	require.Contains(t, textOf(ctx, t, `.facts`), "completed")
	screenshot(t, ctx, "run")
	do(t, ctx, chromedp.Click(`//a[text()="Runs"]`), chromedp.WaitVisible(`table.runs tbody tr`))
	screenshot(t, ctx, "runs")

	// Flow 2 across projects: "Deploy a prompt", pick the prompt, pick
	// another project, whose model deployment of another name the deploy
	// step asks for; the copy deployed there answers its curl.
	var prod struct {
		ID string `json:"id"`
	}
	api.do("POST", "/api/projects", map[string]any{"name": "prod"}, http.StatusCreated, &prod)
	api.do("POST", "/api/projects/"+prod.ID+"/deployments", map[string]any{"name": "live", "kind": "model",
		"upstream": map[string]any{"base_url": "http://" + env.standIn + "/v1", "model": "stand-in"}}, http.StatusCreated, nil)
	var prodKey struct {
		Secret string `json:"secret"`
	}
	api.do("POST", "/api/projects/"+prod.ID+"/api-keys", map[string]any{"name": "prod"}, http.StatusCreated, &prodKey)
	do(t, ctx,
		chromedp.Click(`//a[text()="Deploy a prompt"]`),
		chromedp.Click(`//button[text()="Pick greeter"]`),
		chromedp.Click(`//label[contains(., "prod")]/input[@type="radio"]`),
		chromedp.WaitVisible(`input[name=copy_name]`),
		chromedp.Click(`//form[@aria-label="Deploy"]//button[text()="Deploy"]`),
		chromedp.WaitVisible(`select[aria-label="Map deployment echo"]`),
	)
	require.Contains(t, textOf(ctx, t, `[data-path="deployment_map.echo"]`), `"echo" is not in this project`)
	do(t, ctx,
		chromedp.Poll[chromedp.Void](`[...document.querySelector('select[aria-label="Map deployment echo"]').options].some((o) => o.value === "live") || null`),
		setSelect(`select[aria-label="Map deployment echo"]`, "live"),
		chromedp.Click(`//form[@aria-label="Deploy"]//button[text()="Deploy"]`),
	)
	curl = textOf(ctx, t, `pre.curl`)
	out, err = exec.Command("bash", "-c", strings.ReplaceAll(strings.ReplaceAll(curl, "$BUD_API_KEY", prodKey.Secret), "…", "Bea")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.NoError(t, json.Unmarshal(out, &answer), "%s", out)
	require.Equal(t, "completed", answer.Status, "%s", out)
	require.Equal(t, "Hello Bea", answer.Output[0].Content[0].Text, "the copy in prod, on prod's deployment")

	// Sign out forgets the token.
	do(t, ctx,
		chromedp.Click(`//button[text()="Sign out"]`),
		chromedp.WaitVisible(`input[name=token]`),
	)
	stored, err := chromedp.Run(ctx, chromedp.Evaluate[string](`sessionStorage.getItem("bud.admin-token") ?? ""`))
	require.NoError(t, err)
	require.Empty(t, stored)
}
