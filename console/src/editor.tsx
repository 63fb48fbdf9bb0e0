import { useEffect, useState } from "preact/hooks";
import {
  api, ApiError, CompareResult, Connection, defaultSettings, Deployment, Doc, FormStep, meta, Page, Prompt, PromptVersion, Settings,
} from "./api";
import { DocEditor, newDoc } from "./docedit";
import { navigate } from "./router";
import { RunForm } from "./runform";
import { SettingsForm } from "./settings";
import { CopyButton, ErrorBanner, FieldError, Labeled, Link, StatusBadge, useLoad, val } from "./ui";

/** The API names a document's fields from the request body; the editor from the document. */
function docFields(e: unknown): Record<string, string> {
  if (!(e instanceof ApiError)) return {};
  const out: Record<string, string> = {};
  for (const [k, m] of Object.entries(e.fields)) out[k.replace(/^(prompt\.)?document\./, "")] = m;
  return out;
}

const clone = <T,>(x: T): T => JSON.parse(JSON.stringify(x));

function curlFor(name: string, steps: FormStep[] | undefined): string {
  const gw = meta("bud-gateway") || "$BUD_GATEWAY";
  const structured = steps && !(steps.length === 1 && steps[0].name === "input" && steps[0].widget === "textarea");
  const example: Record<string, unknown> = {};
  for (const s of steps ?? []) example[s.name ?? ""] = s.default ?? (s.widget === "switch" ? false : s.widget === "number" ? 0 : s.options?.[0] ?? "…");
  const body = structured ? { prompt: { id: name, variables: example } } : { prompt: { id: name }, input: "…" };
  return `curl -s ${gw}/v1/responses \\\n  -H "Authorization: Bearer $BUD_API_KEY" \\\n  -H "Content-Type: application/json" \\\n  -d '${JSON.stringify(body)}'`;
}

/** The names a 422 asks to map, as keys of deployment_map or connection_map. */
function missing(fields: Record<string, string>, map: string): string[] {
  return Object.keys(fields)
    .filter((k) => k.startsWith(map + "."))
    .map((k) => k.slice(map.length + 1));
}

/**
 * Deploys a prompt into its own project, or, given another project as
 * target, copies it there first (the version chosen, or every version); the
 * model deployments and connections the target lacks are asked for, each
 * mapped to one of the target's own.
 */
export function Deploy(props: { prompt: Prompt; version: number; steps?: FormStep[]; target?: string }) {
  const target = props.target ?? props.prompt.project_id;
  const cross = target !== props.prompt.project_id;
  const [name, setName] = useState(props.prompt.name);
  const [pin, setPin] = useState(false);
  const [all, setAll] = useState(false);
  const [copyName, setCopyName] = useState(props.prompt.name);
  const [deploymentMap, setDeploymentMap] = useState<Record<string, string>>({});
  const [connectionMap, setConnectionMap] = useState<Record<string, string>>({});
  const [settings, setSettings] = useState<Settings>(defaultSettings());
  const [error, setError] = useState<unknown>();
  const [deployed, setDeployed] = useState<Deployment>();
  const fields = error instanceof ApiError ? error.fields : {};
  const targetDeployments = useLoad(
    () => (cross ? api<Page<Deployment>>("GET", `/projects/${target}/deployments?limit=200`) : Promise.resolve(undefined)),
    [target],
  );
  const targetConnections = useLoad(
    () => (cross ? api<Page<Connection>>("GET", `/projects/${target}/connections?limit=200`) : Promise.resolve(undefined)),
    [target],
  );
  // Every name asked for once stays on screen with its choice.
  const deploymentKeys = [...new Set([...Object.keys(deploymentMap), ...missing(fields, "deployment_map")])];
  const connectionKeys = [...new Set([...Object.keys(connectionMap), ...missing(fields, "connection_map")])];
  if (deployed)
    return (
      <div class="card" role="status" aria-label="Deployed">
        <p>
          Deployed as <b>{deployed.name}</b>
          {deployed.prompt?.version ? ` (version ${deployed.prompt.version})` : " (the default version)"}. Call it with a key of this project:
        </p>
        <pre class="curl">{curlFor(deployed.name, props.steps)}</pre>
        <CopyButton text={curlFor(deployed.name, props.steps)} label="Copy curl" />
      </div>
    );
  return (
    <form
      class="card"
      aria-label="Deploy"
      onSubmit={async (e) => {
        e.preventDefault();
        try {
          const body: Record<string, unknown> = { kind: "prompt", name, prompt_id: props.prompt.id, settings };
          if (pin || (cross && !all)) body.version = props.version;
          if (cross) {
            body.copy = { versions: all ? "all" : "chosen", name: copyName };
            const chosen = (m: Record<string, string>) => Object.fromEntries(Object.entries(m).filter(([, v]) => v !== ""));
            if (Object.keys(chosen(deploymentMap)).length) body.deployment_map = chosen(deploymentMap);
            if (Object.keys(chosen(connectionMap)).length) body.connection_map = chosen(connectionMap);
          }
          setDeployed(await api<Deployment>("POST", `/projects/${target}/deployments`, body));
        } catch (err) {
          setError(err);
        }
      }}
    >
      <h3>Deploy</h3>
      <Labeled label="Deployment name" hint="what callers send as prompt.id">
        <input name="deploy_name" value={name} onInput={(e) => setName(val(e))} required />
        <FieldError fields={fields} path="name" />
      </Labeled>
      {cross && (
        <>
          <Labeled label="Name of the copy" hint="the prompt is copied into the project, as its own prompt">
            <input name="copy_name" value={copyName} onInput={(e) => setCopyName(val(e))} required />
            <FieldError fields={fields} path="copy.name" />
          </Labeled>
          <label class="check">
            <input type="checkbox" name="copy_all" checked={all} onChange={(e) => setAll(e.currentTarget.checked)} /> Copy every version (otherwise
            version {props.version} only)
          </label>
          <FieldError fields={fields} path="copy" />
          <FieldError fields={fields} path="copy.versions" />
          {deploymentKeys.map((k) => (
            <Labeled key={"d" + k} label={`Model deployment "${k}" is, in this project`}>
              <select aria-label={`Map deployment ${k}`} value={deploymentMap[k] ?? ""} onChange={(e) => setDeploymentMap({ ...deploymentMap, [k]: val(e) })}>
                <option value="">(choose)</option>
                {targetDeployments.data?.data
                  .filter((d) => d.kind === "model")
                  .map((d) => (
                    <option value={d.name}>{d.name}</option>
                  ))}
              </select>
              <FieldError fields={fields} path={"deployment_map." + k} />
            </Labeled>
          ))}
          {connectionKeys.map((k) => (
            <Labeled key={"c" + k} label={`Connection "${k}" is, in this project`}>
              <select aria-label={`Map connection ${k}`} value={connectionMap[k] ?? ""} onChange={(e) => setConnectionMap({ ...connectionMap, [k]: val(e) })}>
                <option value="">(choose)</option>
                {targetConnections.data?.data.map((c) => (
                  <option value={c.name}>{c.name}</option>
                ))}
              </select>
              <FieldError fields={fields} path={"connection_map." + k} />
            </Labeled>
          ))}
        </>
      )}
      {(!cross || all) && (
        <label class="check">
          <input type="checkbox" checked={pin} onChange={(e) => setPin(e.currentTarget.checked)} /> Pin version {props.version} (otherwise the default
          version answers)
        </label>
      )}
      <SettingsForm value={settings} onChange={setSettings} fields={fields} prefix="settings." />
      <ErrorBanner error={error} />
      <button type="submit" class="primary">
        Deploy
      </button>
    </form>
  );
}

interface Result {
  status: "running" | "done" | "error";
  r?: CompareResult;
  error?: unknown;
}

export function PromptEditor(props: { projectId?: string; promptId?: string }) {
  const [prompt, setPrompt] = useState<Prompt>();
  const [versions, setVersions] = useState<PromptVersion[]>([]);
  const [version, setVersion] = useState(0);
  const [saved, setSaved] = useState<Doc>();
  const [windows, setWindows] = useState<Doc[]>([]);
  const [meta_, setMeta] = useState({ name: "", description: "", tags: "" });
  const [note, setNote] = useState("");
  const [makeDefault, setMakeDefault] = useState(false);
  const [error, setError] = useState<unknown>();
  const [info, setInfo] = useState("");
  const [steps, setSteps] = useState<FormStep[]>();
  const [running, setRunning] = useState(false);
  const [results, setResults] = useState<Result[]>([]);
  const [showDeploy, setShowDeploy] = useState(false);
  const projectId = prompt?.project_id ?? props.projectId ?? "";
  const deployments = useLoad(() => (projectId ? api<Page<Deployment>>("GET", `/projects/${projectId}/deployments?limit=200`) : Promise.resolve(undefined)), [projectId]);
  const connections = useLoad(() => (projectId ? api<Page<Connection>>("GET", `/projects/${projectId}/connections?limit=200`) : Promise.resolve(undefined)), [projectId]);

  const load = async (id: string, v?: number) => {
    try {
      const p = await api<Prompt>("GET", `/prompts/${id}` + (v ? `?version=${v}` : ""));
      const vs = await api<Page<PromptVersion>>("GET", `/prompts/${id}/versions?limit=200`);
      setPrompt(p);
      setVersions(vs.data);
      setVersion(p.version ?? p.default_version);
      setSaved(p.document);
      setWindows((w) => [clone(p.document!), ...w.slice(1)]);
      setMeta({ name: p.name, description: p.description, tags: p.tags.join(", ") });
      setSteps(undefined);
    } catch (e) {
      setError(e);
    }
  };
  useEffect(() => {
    if (props.promptId) load(props.promptId);
  }, [props.promptId]);
  useEffect(() => {
    if (!props.promptId && windows.length === 0 && deployments.data) {
      const first = deployments.data.data.find((d) => d.kind === "model");
      setWindows([newDoc(first?.name ?? "")]);
    }
  }, [deployments.data]);

  const fields = docFields(error);
  const metaFields = error instanceof ApiError ? error.fields : {};
  const tags = meta_.tags
    .split(",")
    .map((t) => t.trim())
    .filter((t) => t);

  const save = async () => {
    setInfo("");
    try {
      if (!prompt) {
        const p = await api<Prompt>("POST", `/projects/${props.projectId}/prompts`, { name: meta_.name, description: meta_.description, tags, document: windows[0] });
        setError(undefined);
        navigate(`/prompts/${p.id}`);
        return;
      }
      if (meta_.name !== prompt.name || meta_.description !== prompt.description || tags.join(",") !== prompt.tags.join(",")) {
        await api("PATCH", `/prompts/${prompt.id}`, { name: meta_.name, description: meta_.description, tags });
      }
      const v = await api<PromptVersion>("POST", `/prompts/${prompt.id}/versions`, { document: windows[0], note, make_default: makeDefault });
      setError(undefined);
      setNote("");
      setInfo(`Saved version ${v.version}.`);
      await load(prompt.id, v.version);
    } catch (e) {
      setError(e);
    }
  };

  const startRun = async () => {
    setInfo("");
    if (!prompt) {
      setInfo("Save the prompt first: the run form is made from a saved version's input.");
      return;
    }
    if (JSON.stringify(windows[0].input) !== JSON.stringify(saved?.input)) {
      setInfo("The input has changed since version " + version + ": save it as a new version to run with that input.");
      return;
    }
    try {
      const f = await api<{ steps: FormStep[] }>("GET", `/prompts/${prompt.id}/versions/${version}/form`);
      setSteps(f.steps);
      setResults([]);
      setRunning(true);
    } catch (e) {
      setError(e);
    }
  };

  const execute = async (values: Record<string, unknown>) => {
    setRunning(false);
    const structured = windows[0].input.type === "structured";
    const input = structured ? { variables: values } : { input: String(values.input ?? "") };
    setResults(windows.map(() => ({ status: "running" })));
    try {
      if (windows.length === 1) {
        const r = await api<any>("POST", "/playground/run", { project_id: projectId, document: windows[0], ...input });
        setResults([{ status: "done", r: fromResponse(r) }]);
      } else {
        const r = await api<{ results: CompareResult[] }>("POST", "/playground/compare", {
          project_id: projectId,
          candidates: windows.map((d) => ({ document: d })),
          ...input,
        });
        setResults(r.results.map((x) => ({ status: "done", r: x })));
      }
    } catch (e) {
      setResults(windows.map(() => ({ status: "error", error: e })));
    }
  };

  const deploymentsList = deployments.data?.data ?? [];
  return (
    <div class="page editor">
      <p class="crumbs">
        <Link href={`/projects/${projectId}?tab=prompts`}>Prompts</Link> /
      </p>
      <div class="editor-head">
        <Labeled label="Prompt name">
          <input name="prompt_name" value={meta_.name} onInput={(e) => setMeta({ ...meta_, name: val(e) })} required />
          <FieldError fields={metaFields} path="name" />
        </Labeled>
        <Labeled label="Description">
          <input value={meta_.description} onInput={(e) => setMeta({ ...meta_, description: val(e) })} />
        </Labeled>
        <Labeled label="Tags" hint="comma-separated">
          <input value={meta_.tags} onInput={(e) => setMeta({ ...meta_, tags: val(e) })} />
          <FieldError fields={metaFields} path="tags" />
        </Labeled>
        {prompt && (
          <Labeled label="Version">
            <select aria-label="Version" value={version} onChange={(e) => load(prompt.id, Number(val(e)))}>
              {versions.map((v) => (
                <option key={v.version} value={v.version}>
                  v{v.version}
                  {v.version === prompt.default_version ? " (default)" : ""}
                  {v.note ? " — " + v.note : ""}
                </option>
              ))}
            </select>
          </Labeled>
        )}
        {prompt && version !== prompt.default_version && (
          <button
            type="button"
            onClick={async () => {
              try {
                await api("PATCH", `/prompts/${prompt.id}`, { default_version: version });
                setInfo(`Version ${version} is now the default.`);
                await load(prompt.id, version);
              } catch (e) {
                setError(e);
              }
            }}
          >
            Make v{version} the default
          </button>
        )}
      </div>
      <div class="row toolbar">
        {prompt && (
          <>
            <input aria-label="Version note" placeholder="note for the new version" value={note} onInput={(e) => setNote(val(e))} />
            <label class="check">
              <input type="checkbox" checked={makeDefault} onChange={(e) => setMakeDefault(e.currentTarget.checked)} /> make it the default
            </label>
          </>
        )}
        <button type="button" class="primary" onClick={save}>
          {prompt ? "Save new version" : "Save prompt"}
        </button>
        <button type="button" onClick={startRun}>
          Run
        </button>
        {prompt && (
          <button type="button" onClick={() => setShowDeploy(!showDeploy)}>
            Deploy…
          </button>
        )}
        <button type="button" aria-label="Add compare window" title="Compare: add a window with a copy of this prompt" onClick={() => setWindows([...windows, clone(windows[windows.length - 1] ?? windows[0])])}>
          +
        </button>
      </div>
      {info && (
        <p class="info" role="status">
          {info}
        </p>
      )}
      <ErrorBanner error={error} />
      {error instanceof ApiError && Object.keys(error.fields).length > 0 && (
        <ul class="field-list">
          {Object.entries(error.fields).map(([k, m]) => (
            <li key={k}>
              <code>{k}</code>: {m}
            </li>
          ))}
        </ul>
      )}
      {showDeploy && prompt && <Deploy prompt={prompt} version={version} steps={steps} />}
      {running && steps && <RunForm steps={steps} onSubmit={execute} onCancel={() => setRunning(false)} />}
      <div class="windows">
        {windows.map((d, i) => (
          <section class="window" key={i} aria-label={`Window ${i + 1}`}>
            <header>
              <b>{i === 0 ? (prompt ? `v${version} (saved on Save)` : "Prompt") : `Compare ${i + 1}`}</b>
              {i > 0 && (
                <button type="button" aria-label={`Remove window ${i + 1}`} onClick={() => setWindows(windows.filter((_, j) => j !== i))}>
                  ×
                </button>
              )}
            </header>
            {results[i] && <ResultView res={results[i]} />}
            <DocEditor
              label={`Document ${i + 1}`}
              doc={d}
              fields={i === 0 ? fields : {}}
              deployments={deploymentsList}
              connections={connections.data?.data ?? []}
              onChange={(nd) => setWindows(windows.map((w, j) => (j === i ? nd : w)))}
            />
          </section>
        ))}
      </div>
    </div>
  );
}

/** A single run's Response, in a compare result's shape. */
function fromResponse(r: any): CompareResult {
  const text = (r.output ?? [])
    .filter((o: any) => o.type === "message")
    .flatMap((o: any) => o.content ?? [])
    .map((c: any) => c.text ?? "")
    .join("");
  return {
    index: 0,
    run_id: r.run_id ?? r.id ?? null,
    status: r.status,
    model: r.model ?? "",
    output_text: r.output_text ?? text,
    parsed: null,
    error: r.error ?? null,
    usage: r.usage ?? { input_tokens: 0, output_tokens: 0, total_tokens: 0 },
    latency_ms: r.latency_ms ?? 0,
    model_calls: 0,
    validation: "",
  };
}

function ResultView(props: { res: Result }) {
  const { res } = props;
  const ui = meta("bud-temporal-ui");
  if (res.status === "running")
    return (
      <div class="result" role="status">
        <StatusBadge status="running" />
      </div>
    );
  if (res.status === "error")
    return (
      <div class="result">
        <ErrorBanner error={res.error} />
      </div>
    );
  const r = res.r!;
  return (
    <div class="result" role="status" aria-label="Result">
      <div class="row">
        <StatusBadge status={r.status} /> <span>{r.usage.input_tokens} in</span> <span>{r.usage.output_tokens} out</span> <span>{r.latency_ms} ms</span>
        {r.validation && r.validation !== "not_applicable" && <span>validation: {r.validation}</span>}
      </div>
      {r.error && <div class="error">{r.error.message ?? JSON.stringify(r.error)}</div>}
      <pre class="output">{r.output_text}</pre>
      {r.run_id && (
        <p>
          <Link href={`/runs/${r.run_id}`}>run details</Link>
          {ui && (
            <>
              {" · "}
              <a href={`${ui}/workflows/${encodeURIComponent(r.run_id)}`} target="_blank" rel="noreferrer">
                Temporal UI
              </a>
            </>
          )}
        </p>
      )}
    </div>
  );
}
