import { useState } from "preact/hooks";
import { api, ApiError, APIKey, defaultSettings, Deployment, Page, Project, Prompt, Settings } from "./api";
import { navigate } from "./router";
import { RunList } from "./runs";
import { SettingsForm } from "./settings";
import { ConfirmButton, CopyButton, ErrorBanner, FieldError, Labeled, Link, useLoad, val, when } from "./ui";

interface DeploymentDraft {
  name: string;
  base_url: string;
  model: string;
  api_key: string;
  clear_key: boolean;
  default_params: string;
  settings: Settings;
}

function DeploymentForm(props: { projectId: string; existing?: Deployment; onDone: () => void; onCancel: () => void }) {
  const ex = props.existing;
  const [d, setD] = useState<DeploymentDraft>({
    name: ex?.name ?? "",
    base_url: ex?.upstream?.base_url ?? "",
    model: ex?.upstream?.model ?? "",
    api_key: "",
    clear_key: false,
    default_params: ex?.default_params && Object.keys(ex.default_params).length ? JSON.stringify(ex.default_params, null, 2) : "",
    settings: ex?.settings ?? defaultSettings(),
  });
  const [error, setError] = useState<unknown>();
  const fields = error instanceof ApiError ? error.fields : {};
  const set = (p: Partial<DeploymentDraft>) => setD({ ...d, ...p });
  return (
    <form
      class="card"
      aria-label={ex ? "Edit model deployment" : "New model deployment"}
      onSubmit={async (e) => {
        e.preventDefault();
        let params: unknown = undefined;
        if (d.default_params.trim() !== "") {
          try {
            params = JSON.parse(d.default_params);
          } catch {
            setError(new ApiError(400, "invalid", "default params: not JSON", { default_params: "must be a JSON object" }));
            return;
          }
        }
        const upstream: Record<string, string> = { base_url: d.base_url, model: d.model };
        if (d.api_key !== "") upstream.api_key = d.api_key;
        else if (d.clear_key) upstream.api_key = "";
        const body: Record<string, unknown> = { name: d.name, upstream, settings: d.settings };
        if (params !== undefined) body.default_params = params;
        else if (ex) body.default_params = {};
        try {
          if (ex) await api("PATCH", `/projects/${props.projectId}/deployments/${ex.id}`, body);
          else await api("POST", `/projects/${props.projectId}/deployments`, { ...body, kind: "model" });
          props.onDone();
        } catch (err) {
          setError(err);
        }
      }}
    >
      <h3>{ex ? `Edit ${ex.name}` : "New model deployment"}</h3>
      <Labeled label="Name" hint="what callers send as model">
        <input name="name" value={d.name} onInput={(e) => set({ name: val(e) })} required />
        <FieldError fields={fields} path="name" />
      </Labeled>
      <Labeled label="Upstream URL" hint="an OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1">
        <input name="base_url" value={d.base_url} onInput={(e) => set({ base_url: val(e) })} required />
        <FieldError fields={fields} path="upstream.base_url" />
      </Labeled>
      <Labeled label="Upstream model">
        <input name="model" value={d.model} onInput={(e) => set({ model: val(e) })} required />
        <FieldError fields={fields} path="upstream.model" />
      </Labeled>
      <Labeled label="Provider key" hint={ex?.upstream?.api_key_set ? "a key is stored; leave empty to keep it" : "optional; never shown again"}>
        <input name="api_key" type="password" autocomplete="off" value={d.api_key} onInput={(e) => set({ api_key: val(e) })} />
        <FieldError fields={fields} path="upstream.api_key" />
      </Labeled>
      {ex?.upstream?.api_key_set && (
        <label class="check">
          <input type="checkbox" checked={d.clear_key} onChange={(e) => set({ clear_key: e.currentTarget.checked })} /> Remove the stored key
        </label>
      )}
      <Labeled label="Default params (JSON)" hint='e.g. {"temperature": 0.7, "max_tokens": 512}'>
        <textarea name="default_params" rows={3} value={d.default_params} onInput={(e) => set({ default_params: val(e) })} />
        <FieldError fields={fields} path="default_params" />
      </Labeled>
      <SettingsForm value={d.settings} onChange={(s) => set({ settings: s })} fields={fields} prefix="settings." />
      <ErrorBanner error={error} />
      <div class="row">
        <button type="submit" class="primary">
          {ex ? "Save" : "Create deployment"}
        </button>
        <button type="button" onClick={props.onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}

function Deployments(props: { projectId: string }) {
  const list = useLoad(() => api<Page<Deployment>>("GET", `/projects/${props.projectId}/deployments?limit=200`), [props.projectId]);
  const prompts = useLoad(() => api<Page<Prompt>>("GET", `/projects/${props.projectId}/prompts?limit=200`), [props.projectId]);
  const [mode, setMode] = useState<"" | "ask" | "model" | "prompt" | "existing">("");
  const [editing, setEditing] = useState<Deployment>();
  const [error, setError] = useState<unknown>();
  const done = () => {
    setMode("");
    setEditing(undefined);
    list.reload();
  };
  return (
    <section>
      <div class="row">
        <button type="button" class="primary" onClick={() => setMode("ask")}>
          Create deployment
        </button>
      </div>
      {mode === "ask" && (
        <div class="card" role="group" aria-label="What to deploy">
          <p>Deploy a model or a prompt?</p>
          <button type="button" onClick={() => setMode("model")}>
            Model
          </button>
          <button type="button" onClick={() => setMode("prompt")}>
            Prompt
          </button>
        </div>
      )}
      {mode === "prompt" && (
        <div class="card" role="group" aria-label="Which prompt">
          <button type="button" onClick={() => navigate(`/projects/${props.projectId}/prompts/new`)}>
            New prompt
          </button>
          <button type="button" onClick={() => setMode("existing")}>
            Existing prompt
          </button>
        </div>
      )}
      {mode === "existing" && (
        <div class="card">
          <p>Open a prompt; its editor deploys it.</p>
          <ul>
            {prompts.data?.data.map((p) => (
              <li key={p.id}>
                <Link href={`/prompts/${p.id}`}>{p.name}</Link>
              </li>
            ))}
          </ul>
          {prompts.data?.total === 0 && <p class="muted">This project has no prompts yet.</p>}
        </div>
      )}
      {mode === "model" && <DeploymentForm projectId={props.projectId} onDone={done} onCancel={() => setMode("")} />}
      {editing && <DeploymentForm key={editing.id} projectId={props.projectId} existing={editing} onDone={done} onCancel={() => setEditing(undefined)} />}
      <ErrorBanner error={list.error ?? error} />
      <table>
        <thead>
          <tr>
            <th>Name</th>
            <th>Kind</th>
            <th>Upstream / prompt</th>
            <th>Provider key</th>
            <th>Concurrency</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {list.data?.data.map((d) => (
            <tr key={d.id}>
              <td>{d.name}</td>
              <td>{d.kind}</td>
              <td>
                {d.kind === "model" ? (
                  <code>
                    {d.upstream?.model} @ {d.upstream?.base_url}
                  </code>
                ) : (
                  <Link href={`/prompts/${d.prompt?.id}`}>{d.prompt?.version ? `prompt v${d.prompt.version}` : "prompt (default version)"}</Link>
                )}
              </td>
              <td>{d.kind === "model" ? (d.upstream?.api_key_set ? "set" : "none") : ""}</td>
              <td>
                {d.settings.min_concurrency}–{d.settings.max_concurrency || "∞"}
              </td>
              <td class="actions">
                {d.kind === "model" && (
                  <button type="button" onClick={() => setEditing(d)}>
                    Edit
                  </button>
                )}
                <ConfirmButton
                  label="Delete"
                  confirm={`Delete ${d.name}`}
                  onConfirm={async () => {
                    try {
                      await api("DELETE", `/projects/${props.projectId}/deployments/${d.id}`);
                      list.reload();
                    } catch (err) {
                      setError(err);
                    }
                  }}
                />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {list.data?.total === 0 && <p class="muted">No deployments yet.</p>}
    </section>
  );
}

function Keys(props: { projectId: string }) {
  const list = useLoad(() => api<Page<APIKey>>("GET", `/projects/${props.projectId}/api-keys?limit=200`), [props.projectId]);
  const [name, setName] = useState("");
  const [created, setCreated] = useState<APIKey>();
  const [error, setError] = useState<unknown>();
  const fields = error instanceof ApiError ? error.fields : {};
  return (
    <section>
      <form
        class="row"
        onSubmit={async (e) => {
          e.preventDefault();
          try {
            const k = await api<APIKey>("POST", `/projects/${props.projectId}/api-keys`, { name });
            setCreated(k);
            setName("");
            setError(undefined);
            list.reload();
          } catch (err) {
            setError(err);
          }
        }}
      >
        <span>
          <input aria-label="New key name" placeholder="key name" value={name} onInput={(e) => setName(val(e))} required />
          <FieldError fields={fields} path="name" />
        </span>
        <button type="submit" class="primary">
          Create API key
        </button>
      </form>
      {created?.secret && (
        <div class="card secret" role="status">
          <p>
            The secret of <b>{created.name}</b>, shown this once:
          </p>
          <code class="secret-value">{created.secret}</code> <CopyButton text={created.secret} />
          <button type="button" onClick={() => setCreated(undefined)}>
            Done
          </button>
        </div>
      )}
      <ErrorBanner error={list.error ?? error} />
      <table>
        <thead>
          <tr>
            <th>Name</th>
            <th>Prefix</th>
            <th>Created</th>
            <th>Last used</th>
            <th>State</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {list.data?.data.map((k) => (
            <tr key={k.id}>
              <td>{k.name}</td>
              <td>
                <code>{k.prefix}</code>
              </td>
              <td>{when(k.created_at)}</td>
              <td>{when(k.last_used_at) || "never"}</td>
              <td>{k.revoked ? "revoked" : "active"}</td>
              <td class="actions">
                {!k.revoked && (
                  <ConfirmButton
                    label="Revoke"
                    confirm={`Revoke ${k.name}`}
                    onConfirm={async () => {
                      try {
                        await api("DELETE", `/projects/${props.projectId}/api-keys/${k.id}`);
                        list.reload();
                      } catch (err) {
                        setError(err);
                      }
                    }}
                  />
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

function Prompts(props: { projectId: string }) {
  const list = useLoad(() => api<Page<Prompt>>("GET", `/projects/${props.projectId}/prompts?limit=200`), [props.projectId]);
  return (
    <section>
      <div class="row">
        <Link href={`/projects/${props.projectId}/prompts/new`} class="button primary">
          New prompt
        </Link>
      </div>
      <ErrorBanner error={list.error} />
      <table>
        <thead>
          <tr>
            <th>Name</th>
            <th>Tags</th>
            <th>Default</th>
            <th>Latest</th>
            <th>Updated</th>
          </tr>
        </thead>
        <tbody>
          {list.data?.data.map((p) => (
            <tr key={p.id}>
              <td>
                <Link href={`/prompts/${p.id}`}>{p.name}</Link>
              </td>
              <td>{p.tags.map((t) => <span class="tag">{t}</span>)}</td>
              <td>v{p.default_version}</td>
              <td>v{p.latest_version}</td>
              <td>{when(p.updated_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {list.data?.total === 0 && <p class="muted">No prompts yet.</p>}
    </section>
  );
}

const tabs: [string, string][] = [
  ["deployments", "Deployments"],
  ["keys", "API keys"],
  ["prompts", "Prompts"],
  ["runs", "Runs"],
];

export function ProjectPage(props: { id: string; tab: string }) {
  const project = useLoad(() => api<Project>("GET", `/projects/${props.id}`), [props.id]);
  return (
    <div class="page">
      <p class="crumbs">
        <Link href="/">Projects</Link> /
      </p>
      <h2>{project.data?.name ?? "…"}</h2>
      <ErrorBanner error={project.error} />
      <nav class="tabs" aria-label="Project sections">
        {tabs.map(([k, label]) => (
          <Link key={k} href={`/projects/${props.id}?tab=${k}`} class={props.tab === k ? "active" : ""}>
            {label}
          </Link>
        ))}
      </nav>
      {props.tab === "deployments" && <Deployments projectId={props.id} />}
      {props.tab === "keys" && <Keys projectId={props.id} />}
      {props.tab === "prompts" && <Prompts projectId={props.id} />}
      {props.tab === "runs" && <RunList projectId={props.id} />}
    </div>
  );
}
