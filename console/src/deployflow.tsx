import { useState } from "preact/hooks";
import { api, FormStep, Page, Project, Prompt } from "./api";
import { Deploy } from "./editor";
import { ErrorBanner, useLoad, val } from "./ui";

/**
 * "Deploy a prompt": pick a prompt of any project, then the project to
 * deploy it in, then the deploy step. Another project than the prompt's
 * gets a copy of it (see Deploy).
 */
export function DeployFlow() {
  const [q, setQ] = useState("");
  const [prompt, setPrompt] = useState<Prompt>();
  const [version, setVersion] = useState(0);
  const [target, setTarget] = useState<string>();
  const projects = useLoad(() => api<Page<Project>>("GET", "/projects?limit=200"), []);
  const prompts = useLoad(() => api<Page<Prompt>>("GET", "/prompts?limit=100" + (q ? "&q=" + encodeURIComponent(q) : "")), [q]);
  const form = useLoad(
    () => (prompt && version ? api<{ steps: FormStep[] }>("GET", `/prompts/${prompt.id}/versions/${version}/form`) : Promise.resolve(undefined)),
    [prompt?.id, version],
  );
  const projectName = (id: string) => projects.data?.data.find((p) => p.id === id)?.name ?? id;
  return (
    <div class="page">
      <section aria-label="Pick a prompt">
        <h2>1. Pick a prompt</h2>
        <input aria-label="Search prompts by name" type="search" placeholder="search by name" value={q} onInput={(e) => setQ(val(e))} />
        <ErrorBanner error={prompts.error} />
        <table>
          <thead>
            <tr>
              <th>Prompt</th>
              <th>Project</th>
              <th>Default</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {prompts.data?.data.map((p) => (
              <tr key={p.id} class={prompt?.id === p.id ? "selected" : ""}>
                <td>{p.name}</td>
                <td>{projectName(p.project_id)}</td>
                <td>v{p.default_version}</td>
                <td class="actions">
                  <button
                    type="button"
                    aria-pressed={prompt?.id === p.id}
                    onClick={() => {
                      setPrompt(p);
                      setVersion(p.default_version);
                      setTarget(undefined);
                    }}
                  >
                    {`Pick ${p.name}`}
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {prompts.data && prompts.data.total === 0 && <p class="muted">No prompts match.</p>}
      </section>
      {prompt && (
        <section aria-label="Pick a project">
          <h2>2. Pick a project</h2>
          <label class="labeled">
            <span>Version of {prompt.name}</span>
            <select value={String(version)} onChange={(e) => setVersion(Number(val(e)))}>
              {Array.from({ length: prompt.latest_version }, (_, i) => i + 1).map((n) => (
                <option value={String(n)}>
                  v{n}
                  {n === prompt.default_version ? " (default)" : ""}
                </option>
              ))}
            </select>
          </label>
          <ErrorBanner error={projects.error} />
          <ul class="choices">
            {projects.data?.data.map((p) => (
              <li key={p.id}>
                <label class="check">
                  <input type="radio" name="target" checked={target === p.id} onChange={() => setTarget(p.id)} /> {p.name}
                  {p.id === prompt.project_id ? " (the prompt's own)" : " (a copy is made there)"}
                </label>
              </li>
            ))}
          </ul>
        </section>
      )}
      {prompt && target && (
        <section aria-label="Deploy it">
          <h2>3. Deploy {prompt.name} in {projectName(target)}</h2>
          <Deploy key={prompt.id + target + version} prompt={prompt} version={version} steps={form.data?.steps} target={target} />
        </section>
      )}
    </div>
  );
}
