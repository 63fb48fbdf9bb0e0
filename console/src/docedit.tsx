// The editor of one prompt document: every field of prompt/schema.json, each
// with the problem the API named for it next to it.
import { useState } from "preact/hooks";
import { Connection, Deployment, Doc, Message, Shape, Tool, Variable } from "./api";
import { FieldError, Labeled, val } from "./ui";

type Fields = Record<string, string>;
const varTypes = ["string", "integer", "number", "boolean", "enum", "array", "object"];
const roles = ["user", "assistant", "developer", "tool"];

export function newDoc(deployment: string): Doc {
  return {
    deployment,
    system_prompt: "",
    messages: [{ role: "user", content: "{{ input }}" }],
    input: { type: "text" },
    output: { type: "text" },
    allow_multiple_calls: false,
    llm_retry_limit: 3,
  };
}

/** A JSON value typed in a text field: kept as typed until it parses. */
function JsonField(props: { value: unknown; onChange: (v: unknown) => void; label: string; placeholder?: string; rows?: number }) {
  const [text, setText] = useState(props.value === undefined ? "" : JSON.stringify(props.value));
  const [bad, setBad] = useState(false);
  return (
    <span>
      <textarea
        aria-label={props.label}
        rows={props.rows ?? 1}
        placeholder={props.placeholder}
        value={text}
        class={bad ? "invalid" : ""}
        onInput={(e) => {
          const t = val(e);
          setText(t);
          if (t.trim() === "") {
            setBad(false);
            props.onChange(undefined);
            return;
          }
          try {
            props.onChange(JSON.parse(t));
            setBad(false);
          } catch {
            setBad(true);
          }
        }}
      />
      {bad && <small class="field-error">not JSON yet</small>}
    </span>
  );
}

function defaultText(v: Variable): string {
  if (v.default === undefined) return "";
  return typeof v.default === "string" ? v.default : JSON.stringify(v.default);
}

function parseDefault(type: string, t: string): unknown {
  if (t === "") return undefined;
  if (type === "string" || type === "enum") return t;
  try {
    return JSON.parse(t);
  } catch {
    return t; // the API names the field when it does not fit the type
  }
}

function VarRow(props: { v: Variable; path: string; fields: Fields; onChange: (v: Variable | null) => void; side: string }) {
  const v = props.v;
  const set = (p: Partial<Variable>) => props.onChange({ ...v, ...p });
  const f = (k: string) => <FieldError fields={props.fields} path={`${props.path}.${k}`} />;
  const rules = (v.validation?.custom ?? []).map((r) => (typeof r === "string" ? r : String((r as { rule?: string }).rule ?? "")));
  const setBasic = (b: unknown) => {
    const validation = { ...(v.validation ?? {}) };
    if (b === undefined) delete validation.basic;
    else validation.basic = b as Record<string, unknown>;
    set({ validation: Object.keys(validation).length ? validation : undefined });
  };
  const setRules = (text: string) => {
    const old = v.validation?.custom ?? [];
    const lines = text.split("\n").filter((l) => l.trim() !== "");
    // A rule whose text is unchanged keeps its saved form (mode, translation).
    const custom = lines.map((l) => old.find((o) => (typeof o === "string" ? o : (o as { rule?: string }).rule) === l) ?? l);
    const validation = { ...(v.validation ?? {}) };
    if (custom.length) validation.custom = custom;
    else delete validation.custom;
    set({ validation: Object.keys(validation).length ? validation : undefined });
  };
  return (
    <tr>
      <td>
        <input aria-label={`${props.side} variable name`} value={v.name ?? ""} onInput={(e) => set({ name: val(e) })} />
        {f("name")}
      </td>
      <td>
        <select aria-label={`${props.side} variable type`} value={v.type} onChange={(e) => set({ type: val(e) })}>
          {varTypes.map((t) => (
            <option key={t}>{t}</option>
          ))}
        </select>
        {v.type === "array" && (
          <select
            aria-label={`${props.side} item type`}
            value={v.items?.type ?? "string"}
            onChange={(e) => set({ items: { ...(v.items ?? {}), type: val(e) } })}
          >
            {varTypes.map((t) => (
              <option key={t} value={t}>
                of {t}
              </option>
            ))}
          </select>
        )}
        {f("type")}
        {f("items")}
      </td>
      <td>
        <input aria-label={`${props.side} variable description`} value={v.description ?? ""} onInput={(e) => set({ description: val(e) || undefined })} />
      </td>
      <td>
        <input aria-label={`${props.side} variable default`} value={defaultText(v)} onInput={(e) => set({ default: parseDefault(v.type, val(e)) })} />
        {f("default")}
      </td>
      <td>
        <input
          aria-label={`${props.side} variable options`}
          placeholder={v.type === "enum" ? "a, b, c" : ""}
          disabled={v.type !== "enum"}
          value={(v.options ?? []).join(", ")}
          onInput={(e) => {
            const o = val(e)
              .split(",")
              .map((s) => s.trim())
              .filter((s) => s);
            set({ options: o.length ? o : undefined });
          }}
        />
        {f("options")}
      </td>
      <td>
        <input type="checkbox" aria-label={`${props.side} variable required`} checked={!!v.required} onChange={(e) => set({ required: e.currentTarget.checked || undefined })} />
      </td>
      <td>
        <JsonField label={`${props.side} basic validation`} placeholder='{"max_length": 80}' value={v.validation?.basic} onChange={setBasic} />
        {f("validation.basic")}
        {Object.entries(props.fields)
          .filter(([k]) => k.startsWith(`${props.path}.validation.basic.`))
          .map(([k, m]) => (
            <div class="field-error" role="alert" data-path={k} key={k}>
              {k.slice(props.path.length + 18)}: {m}
            </div>
          ))}
      </td>
      <td>
        <textarea aria-label={`${props.side} custom rules`} rows={1} placeholder="one rule per line" value={rules.join("\n")} onInput={(e) => setRules(val(e))} />
        {Object.entries(props.fields)
          .filter(([k]) => k.startsWith(`${props.path}.validation.custom`))
          .map(([k, m]) => (
            <div class="field-error" role="alert" data-path={k} key={k}>
              {m}
            </div>
          ))}
      </td>
      <td>
        <button type="button" aria-label={`Remove ${props.side} variable ${v.name ?? ""}`} onClick={() => props.onChange(null)}>
          ×
        </button>
      </td>
    </tr>
  );
}

function ShapeEditor(props: { side: "input" | "output"; shape: Shape; fields: Fields; onChange: (s: Shape) => void }) {
  const s = props.shape;
  const vars = s.variables ?? [];
  return (
    <fieldset>
      <legend>{props.side === "input" ? "Input" : "Output"}</legend>
      <label class="check">
        <input
          type="checkbox"
          aria-label={`${props.side} is structured`}
          checked={s.type === "structured"}
          onChange={(e) =>
            props.onChange(
              e.currentTarget.checked
                ? { type: "structured", variables: vars.length ? vars : [{ name: props.side === "input" ? "text" : "answer", type: "string", required: true }] }
                : { type: "text" },
            )
          }
        />{" "}
        Structured {props.side === "input" ? "(typed variables)" : "(JSON, validated)"}
      </label>
      <FieldError fields={props.fields} path={props.side} />
      <FieldError fields={props.fields} path={`${props.side}.variables`} />
      {s.type === "structured" && (
        <>
          <table class="vars">
            <thead>
              <tr>
                <th>Name</th>
                <th>Type</th>
                <th>Description</th>
                <th>Default</th>
                <th>Options</th>
                <th>Req.</th>
                <th>Basic validation</th>
                <th>Custom rules</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {vars.map((v, i) => (
                <VarRow
                  key={i}
                  side={props.side}
                  v={v}
                  path={`${props.side}.variables[${i}]`}
                  fields={props.fields}
                  onChange={(nv) => {
                    const next = vars.slice();
                    if (nv === null) next.splice(i, 1);
                    else next[i] = nv;
                    props.onChange({ ...s, variables: next });
                  }}
                />
              ))}
            </tbody>
          </table>
          <button type="button" onClick={() => props.onChange({ ...s, variables: [...vars, { name: "", type: "string" }] })}>
            Add {props.side} variable
          </button>
        </>
      )}
    </fieldset>
  );
}

const numParams: [string, string, string][] = [
  ["temperature", "Temperature", "0.01"],
  ["max_tokens", "Max tokens", "1"],
  ["top_p", "Top p", "0.01"],
  ["frequency_penalty", "Frequency penalty", "0.01"],
  ["presence_penalty", "Presence penalty", "0.01"],
  ["seed", "Seed", "1"],
];

function ParamsEditor(props: { params: Record<string, unknown>; fields: Fields; onChange: (p: Record<string, unknown>) => void }) {
  const p = props.params;
  const set = (k: string, v: unknown) => {
    const next = { ...p };
    if (v === undefined || v === "") delete next[k];
    else next[k] = v;
    props.onChange(next);
  };
  const stop = Array.isArray(p.stop) ? (p.stop as string[]).join(", ") : typeof p.stop === "string" ? p.stop : "";
  return (
    <fieldset class="params">
      <legend>Model parameters</legend>
      {numParams.map(([k, label, step]) => (
        <Labeled key={k} label={label}>
          <input type="number" step={step} value={p[k] === undefined ? "" : String(p[k])} onInput={(e) => set(k, val(e) === "" ? undefined : Number(val(e)))} />
          <FieldError fields={props.fields} path={`model_params.${k}`} />
        </Labeled>
      ))}
      <Labeled label="Stop sequences" hint="comma-separated">
        <input
          value={stop}
          onInput={(e) => {
            const s = val(e)
              .split(",")
              .map((x) => x.trim())
              .filter((x) => x);
            set("stop", s.length ? s : undefined);
          }}
        />
        <FieldError fields={props.fields} path="model_params.stop" />
      </Labeled>
      <FieldError fields={props.fields} path="model_params" />
    </fieldset>
  );
}

function ToolsEditor(props: { tools: Tool[]; connections: Connection[]; fields: Fields; onChange: (t: Tool[]) => void }) {
  const tools = props.tools;
  return (
    <fieldset>
      <legend>Tools</legend>
      {props.connections.length === 0 && <p class="muted">This project has no connections.</p>}
      {props.connections.map((c) => {
        const i = tools.findIndex((t) => t.type === "connection" && t.connection_id === c.id);
        const t = i >= 0 ? tools[i] : undefined;
        const update = (nt: Tool | null) => {
          const next = tools.slice();
          if (nt === null) next.splice(i, 1);
          else if (i >= 0) next[i] = nt;
          else next.push(nt);
          props.onChange(next);
        };
        return (
          <div class="tool" key={c.id}>
            <label class="check">
              <input
                type="checkbox"
                checked={!!t}
                onChange={(e) => update(e.currentTarget.checked ? { type: "connection", connection_id: c.id, active: true, require_approval: "never" } : null)}
              />{" "}
              {c.name} <small>({c.kind})</small>
            </label>
            {t && (
              <>
                <label class="check">
                  <input type="checkbox" checked={!!t.active} onChange={(e) => update({ ...t, active: e.currentTarget.checked })} /> active
                </label>
                <input
                  aria-label={`Allowed tools of ${c.name}`}
                  placeholder="allowed tools (all when empty)"
                  value={(t.allowed_tools ?? []).join(", ")}
                  onInput={(e) => {
                    const a = val(e)
                      .split(",")
                      .map((x) => x.trim())
                      .filter((x) => x);
                    update({ ...t, allowed_tools: a.length ? a : undefined });
                  }}
                />
                <select
                  aria-label={`Approval for ${c.name}`}
                  value={typeof t.require_approval === "string" ? t.require_approval : "listed"}
                  onChange={(e) => update({ ...t, require_approval: val(e) })}
                >
                  <option value="never">no approval</option>
                  <option value="always">approve every call</option>
                  {typeof t.require_approval !== "string" && <option value="listed">approve listed tools (as saved)</option>}
                </select>
                <FieldError fields={props.fields} path={`tools[${i}]`} />
              </>
            )}
          </div>
        );
      })}
      {tools.some((t) => t.type === "function") && (
        <p class="muted">{tools.filter((t) => t.type === "function").length} function tool(s) kept as saved.</p>
      )}
    </fieldset>
  );
}

export function DocEditor(props: { doc: Doc; onChange: (d: Doc) => void; fields: Fields; deployments: Deployment[]; connections: Connection[]; label: string }) {
  const d = props.doc;
  const set = (p: Partial<Doc>) => props.onChange({ ...d, ...p });
  const msgs = d.messages ?? [];
  const setMsg = (i: number, m: Message | null) => {
    const next = msgs.slice();
    if (m === null) next.splice(i, 1);
    else next[i] = m;
    set({ messages: next });
  };
  const models = props.deployments.filter((x) => x.kind === "model");
  const f = (p: string) => <FieldError fields={props.fields} path={p} />;
  return (
    <div class="doc" aria-label={props.label} role="group">
      <Labeled label="Model deployment">
        <select name="deployment" value={d.deployment} onChange={(e) => set({ deployment: val(e) })}>
          <option value="">choose…</option>
          {models.map((m) => (
            <option key={m.id} value={m.name}>
              {m.name}
            </option>
          ))}
          {d.deployment && !models.some((m) => m.name === d.deployment) && <option value={d.deployment}>{d.deployment} (not in project)</option>}
        </select>
        {f("deployment")}
      </Labeled>
      <ParamsEditor params={d.model_params ?? {}} fields={props.fields} onChange={(p) => set({ model_params: Object.keys(p).length ? p : undefined })} />
      <Labeled label="System prompt (Jinja)">
        <textarea name="system_prompt" rows={3} value={d.system_prompt} onInput={(e) => set({ system_prompt: val(e) })} />
        {f("system_prompt")}
      </Labeled>
      <fieldset>
        <legend>Messages (Jinja)</legend>
        {msgs.map((m, i) => (
          <div class="msg" key={i}>
            <select aria-label={`Message ${i + 1} role`} value={m.role} onChange={(e) => setMsg(i, { ...m, role: val(e) })}>
              {roles.map((r) => (
                <option key={r}>{r}</option>
              ))}
            </select>
            <textarea aria-label={`Message ${i + 1} content`} rows={2} value={m.content} onInput={(e) => setMsg(i, { ...m, content: val(e) })} />
            <button type="button" aria-label={`Remove message ${i + 1}`} onClick={() => setMsg(i, null)}>
              ×
            </button>
            {f(`messages[${i}]`)}
            {f(`messages[${i}].content`)}
            {f(`messages[${i}].role`)}
          </div>
        ))}
        <button type="button" onClick={() => set({ messages: [...msgs, { role: "user", content: "" }] })}>
          Add message
        </button>
        {f("messages")}
      </fieldset>
      <ShapeEditor side="input" shape={d.input} fields={props.fields} onChange={(s) => set({ input: s })} />
      <ShapeEditor side="output" shape={d.output} fields={props.fields} onChange={(s) => set({ output: s })} />
      <ToolsEditor tools={d.tools ?? []} connections={props.connections} fields={props.fields} onChange={(t) => set({ tools: t.length ? t : undefined })} />
      <label class="check">
        <input type="checkbox" name="allow_multiple_calls" checked={d.allow_multiple_calls} onChange={(e) => set({ allow_multiple_calls: e.currentTarget.checked })} /> Allow
        multiple calls
      </label>
      {f("allow_multiple_calls")}
      <Labeled label="LLM retry limit">
        <input type="number" min="0" max="10" name="llm_retry_limit" value={d.llm_retry_limit} onInput={(e) => set({ llm_retry_limit: Number(val(e)) })} />
        {f("llm_retry_limit")}
      </Labeled>
    </div>
  );
}
