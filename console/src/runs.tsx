import { useState } from "preact/hooks";
import { api, meta, Page, Prompt, Run, RunSummary } from "./api";
import { ErrorBanner, Labeled, Link, StatusBadge, useLoad, val, when } from "./ui";

const toRFC3339 = (local: string) => (local ? new Date(local).toISOString() : "");

export function RunList(props: { projectId: string }) {
  const [promptId, setPromptId] = useState("");
  const [version, setVersion] = useState("");
  const [status, setStatus] = useState("");
  const [since, setSince] = useState("");
  const [until, setUntil] = useState("");
  const prompts = useLoad(() => api<Page<Prompt>>("GET", `/projects/${props.projectId}/prompts?limit=200`), [props.projectId]);
  const runs = useLoad(() => {
    const p = new URLSearchParams({ project_id: props.projectId, limit: "100" });
    if (promptId) p.set("prompt_id", promptId);
    if (promptId && version) p.set("version", version);
    if (status) p.set("status", status);
    if (since) p.set("since", toRFC3339(since));
    if (until) p.set("until", toRFC3339(until));
    return api<Page<RunSummary>>("GET", "/runs?" + p);
  }, [props.projectId, promptId, version, status, since, until]);
  const promptName = (id: string | null) => prompts.data?.data.find((p) => p.id === id)?.name ?? "";
  return (
    <section>
      <form class="row filters" aria-label="Run filters" onSubmit={(e) => e.preventDefault()}>
        <Labeled label="Prompt">
          <select value={promptId} onChange={(e) => setPromptId(val(e))}>
            <option value="">any</option>
            {prompts.data?.data.map((p) => (
              <option key={p.id} value={p.id}>
                {p.name}
              </option>
            ))}
          </select>
        </Labeled>
        <Labeled label="Version">
          <input type="number" min="1" value={version} disabled={!promptId} onInput={(e) => setVersion(val(e))} />
        </Labeled>
        <Labeled label="Status">
          <select value={status} onChange={(e) => setStatus(val(e))}>
            <option value="">any</option>
            {["completed", "failed", "incomplete", "waiting"].map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </Labeled>
        <Labeled label="Since">
          <input type="datetime-local" value={since} onInput={(e) => setSince(val(e))} />
        </Labeled>
        <Labeled label="Until">
          <input type="datetime-local" value={until} onInput={(e) => setUntil(val(e))} />
        </Labeled>
      </form>
      <ErrorBanner error={runs.error} />
      <table class="runs">
        <thead>
          <tr>
            <th>Run</th>
            <th>Status</th>
            <th>Prompt</th>
            <th>Deployment</th>
            <th>Tokens</th>
            <th>Latency</th>
            <th>Started</th>
          </tr>
        </thead>
        <tbody>
          {runs.data?.data.map((r) => (
            <tr key={r.id}>
              <td>
                <Link href={`/runs/${r.id}`}>{r.id}</Link>
              </td>
              <td>
                <StatusBadge status={r.status} />
              </td>
              <td>{r.prompt_id ? `${promptName(r.prompt_id)} v${r.prompt_version ?? ""}` : r.source}</td>
              <td>{r.deployment}</td>
              <td>{r.usage.total_tokens}</td>
              <td>{r.latency_ms} ms</td>
              <td>{when(r.created_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {runs.data?.total === 0 && <p class="muted">No runs match.</p>}
    </section>
  );
}

function Json(props: { value: unknown }) {
  return <pre class="json">{typeof props.value === "string" ? props.value : JSON.stringify(props.value, null, 2)}</pre>;
}

export function RunPage(props: { id: string }) {
  const run = useLoad(() => api<Run>("GET", `/runs/${encodeURIComponent(props.id)}`), [props.id]);
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const r = run.data;
  const ui = meta("bud-temporal-ui");
  const decide = async (callId: string, approve: boolean) => {
    setBusy(true);
    try {
      await api("POST", `/runs/${encodeURIComponent(props.id)}/approvals/${encodeURIComponent(callId)}`, { approve });
      setError(undefined);
      run.reload();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="page run">
      <p class="crumbs">
        {r && <Link href={`/projects/${r.project_id}?tab=runs`}>Runs</Link>} /
      </p>
      <h2>
        Run <code>{props.id}</code>
      </h2>
      <ErrorBanner error={run.error ?? error} />
      {r && (
        <>
          <dl class="facts">
            <dt>Status</dt>
            <dd>
              <StatusBadge status={r.status} />
            </dd>
            {r.deployment && (
              <>
                <dt>Deployment</dt>
                <dd>
                  {r.deployment} ({r.model})
                </dd>
              </>
            )}
            {r.prompt_id && (
              <>
                <dt>Prompt</dt>
                <dd>
                  <Link href={`/prompts/${r.prompt_id}`}>version {r.prompt_version}</Link>
                </dd>
              </>
            )}
            {r.usage && (
              <>
                <dt>Tokens</dt>
                <dd>
                  {r.usage.input_tokens} in, {r.usage.output_tokens} out
                </dd>
                <dt>Latency</dt>
                <dd>{r.latency_ms} ms</dd>
              </>
            )}
            <dt>Started</dt>
            <dd>{when(r.created_at)}</dd>
            {ui && (
              <>
                <dt>Workflow</dt>
                <dd>
                  <a href={`${ui}/workflows/${encodeURIComponent(r.id)}`} target="_blank" rel="noreferrer">
                    open in the Temporal UI
                  </a>
                </dd>
              </>
            )}
          </dl>
          {r.output?.approval_requests && r.output.approval_requests.length > 0 && r.status === "waiting" && (
            <section class="card approvals" aria-label="Waiting for approval">
              <h3>Waiting for approval</h3>
              {r.output.approval_requests.map((a) => (
                <div key={a.id} class="approval">
                  <p>
                    <b>{a.server_label}</b> wants to call <code>{a.name}</code> with
                  </p>
                  <Json value={a.arguments} />
                  <button type="button" class="primary" disabled={busy} onClick={() => decide(a.id, true)}>
                    Approve {a.name}
                  </button>{" "}
                  <button type="button" class="danger" disabled={busy} onClick={() => decide(a.id, false)}>
                    Deny {a.name}
                  </button>
                </div>
              ))}
            </section>
          )}
          {r.status === "running" && (
            <p>
              Still running; its record appears when it ends.{" "}
              <button type="button" onClick={run.reload}>
                Refresh
              </button>
            </p>
          )}
          {r.error != null && (
            <section>
              <h3>Error</h3>
              <Json value={r.error} />
            </section>
          )}
          {r.input !== undefined && (
            <section>
              <h3>Input</h3>
              <Json value={r.input} />
            </section>
          )}
          {r.rendered_messages && (
            <section>
              <h3>Rendered messages</h3>
              {r.rendered_messages.map((m, i) => (
                <div key={i} class={"message role-" + m.role}>
                  <span class="role">{m.role}</span>
                  <pre>{m.content}</pre>
                </div>
              ))}
            </section>
          )}
          {r.model_calls && r.model_calls.length > 0 && (
            <section>
              <h3>Model calls</h3>
              <table>
                <thead>
                  <tr>
                    <th>Call</th>
                    <th>Attempt</th>
                    <th>Latency</th>
                    <th>Tokens</th>
                    <th>Finish</th>
                    <th>Details</th>
                  </tr>
                </thead>
                <tbody>
                  {r.model_calls.map((c, i) => {
                    const u = (c.usage ?? {}) as { input_tokens?: number; output_tokens?: number };
                    return (
                      <tr key={i}>
                        <td>{String(c.call ?? i + 1)}</td>
                        <td>{String(c.attempt ?? "")}</td>
                        <td>{String(c.latency_ms ?? "")} ms</td>
                        <td>
                          {u.input_tokens ?? 0} in, {u.output_tokens ?? 0} out
                        </td>
                        <td>{String(c.finish_reason ?? "")}</td>
                        <td>
                          <details>
                            <summary>all fields</summary>
                            <Json value={c} />
                          </details>
                        </td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </section>
          )}
          {r.tool_calls && r.tool_calls.length > 0 && (
            <section>
              <h3>Tool calls</h3>
              {r.tool_calls.map((c, i) => (
                <div key={i} class="card">
                  <p>
                    <code>{String(c.name)}</code> on {String(c.server_label ?? "")} (turn {String(c.turn ?? "")}, {String(c.latency_ms ?? 0)} ms)
                    {c.approved === true && " — approved"}
                    {c.approved === false && " — denied"}
                  </p>
                  <Json value={{ arguments: c.arguments, output: c.output, error: c.error }} />
                </div>
              ))}
            </section>
          )}
          {r.output && (
            <section>
              <h3>Output</h3>
              {r.output.text && <pre class="output">{r.output.text}</pre>}
              {r.output.parsed !== undefined && r.output.parsed !== null && <Json value={r.output.parsed} />}
              <details>
                <summary>whole output record</summary>
                <Json value={r.output} />
              </details>
            </section>
          )}
        </>
      )}
    </div>
  );
}
