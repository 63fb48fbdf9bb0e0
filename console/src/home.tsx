import { useState } from "preact/hooks";
import { api, Page, Project, Prompt } from "./api";
import { navigate } from "./router";
import { ConfirmButton, ErrorBanner, FieldError, Link, useLoad, val, when } from "./ui";
import { ApiError } from "./api";

function ProjectRow(props: { p: Project; onChange: () => void }) {
  const [editing, setEditing] = useState(false);
  const [name, setName] = useState(props.p.name);
  const [error, setError] = useState<unknown>();
  return (
    <tr>
      <td>
        {editing ? (
          <form
            class="inline"
            onSubmit={async (e) => {
              e.preventDefault();
              try {
                await api("PATCH", `/projects/${props.p.id}`, { name });
                setEditing(false);
                props.onChange();
              } catch (err) {
                setError(err);
              }
            }}
          >
            <input aria-label="Project name" value={name} onInput={(e) => setName(val(e))} />
            <button type="submit">Save</button>
            <button type="button" onClick={() => setEditing(false)}>
              Cancel
            </button>
            <ErrorBanner error={error} />
          </form>
        ) : (
          <Link href={`/projects/${props.p.id}`}>{props.p.name}</Link>
        )}
      </td>
      <td>{props.p.description}</td>
      <td>{when(props.p.created_at)}</td>
      <td class="actions">
        {!editing && (
          <button type="button" onClick={() => setEditing(true)}>
            Rename
          </button>
        )}
        <ConfirmButton
          label="Delete"
          confirm={`Delete ${props.p.name} and all in it`}
          onConfirm={async () => {
            try {
              await api("DELETE", `/projects/${props.p.id}`);
              props.onChange();
            } catch (err) {
              setError(err);
            }
          }}
        />
      </td>
    </tr>
  );
}

export function Home() {
  const projects = useLoad(() => api<Page<Project>>("GET", "/projects?limit=200"), []);
  const [name, setName] = useState("");
  const [desc, setDesc] = useState("");
  const [createErr, setCreateErr] = useState<unknown>();
  const [q, setQ] = useState("");
  const [tag, setTag] = useState("");
  const prompts = useLoad(() => {
    const p = new URLSearchParams({ limit: "100" });
    if (q) p.set("q", q);
    if (tag) p.set("tag", tag);
    return api<Page<Prompt>>("GET", "/prompts?" + p);
  }, [q, tag]);
  const projectName = (id: string) => projects.data?.data.find((p) => p.id === id)?.name ?? id;
  const fields = createErr instanceof ApiError ? createErr.fields : {};
  return (
    <div class="page">
      <section>
        <h2>Projects</h2>
        <form
          class="row"
          onSubmit={async (e) => {
            e.preventDefault();
            try {
              const p = await api<Project>("POST", "/projects", { name, description: desc });
              setName("");
              setDesc("");
              setCreateErr(undefined);
              navigate(`/projects/${p.id}`);
            } catch (err) {
              setCreateErr(err);
            }
          }}
        >
          <span>
            <input aria-label="New project name" placeholder="new project name" value={name} onInput={(e) => setName(val(e))} required />
            <FieldError fields={fields} path="name" />
          </span>
          <input aria-label="New project description" placeholder="description" value={desc} onInput={(e) => setDesc(val(e))} />
          <button type="submit" class="primary">
            Create project
          </button>
        </form>
        <ErrorBanner error={createErr} />
        <ErrorBanner error={projects.error} />
        <table>
          <thead>
            <tr>
              <th>Name</th>
              <th>Description</th>
              <th>Created</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {projects.data?.data.map((p) => <ProjectRow key={p.id} p={p} onChange={projects.reload} />)}
          </tbody>
        </table>
        {projects.data && projects.data.total === 0 && <p class="muted">No projects yet.</p>}
      </section>
      <section>
        <h2>Prompts</h2>
        <div class="row">
          <input aria-label="Search prompts by name" type="search" placeholder="search by name" value={q} onInput={(e) => setQ(val(e))} />
          <input aria-label="Filter prompts by tag" placeholder="tag" value={tag} onInput={(e) => setTag(val(e))} />
        </div>
        <ErrorBanner error={prompts.error} />
        <table>
          <thead>
            <tr>
              <th>Name</th>
              <th>Project</th>
              <th>Tags</th>
              <th>Default</th>
              <th>Latest</th>
              <th>Updated</th>
            </tr>
          </thead>
          <tbody>
            {prompts.data?.data.map((p) => (
              <tr key={p.id}>
                <td>
                  <Link href={`/prompts/${p.id}`}>{p.name}</Link>
                </td>
                <td>
                  <Link href={`/projects/${p.project_id}`}>{projectName(p.project_id)}</Link>
                </td>
                <td>{p.tags.map((t) => <span class="tag">{t}</span>)}</td>
                <td>v{p.default_version}</td>
                <td>v{p.latest_version}</td>
                <td>{when(p.updated_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {prompts.data && prompts.data.total === 0 && <p class="muted">No prompts match.</p>}
      </section>
    </div>
  );
}
