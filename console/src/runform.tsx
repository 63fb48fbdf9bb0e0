// The sequential run form: one input at a time, in the declared order, each
// checked in the browser against the constraints /form gives.
import { useState } from "preact/hooks";
import { FormStep } from "./api";
import { Labeled } from "./ui";

/** Why v does not satisfy the step; "" when it does. */
export function check(step: FormStep, v: unknown): string {
  const c = step.constraints ?? {};
  const empty = v === undefined || v === "" || v === null;
  if (empty) return step.required && step.widget !== "switch" ? "required" : "";
  const n = (k: string) => (typeof c[k] === "number" ? (c[k] as number) : undefined);
  if (typeof v === "string") {
    if (n("minLength") !== undefined && [...v].length < n("minLength")!) return `at least ${n("minLength")} characters`;
    if (n("maxLength") !== undefined && [...v].length > n("maxLength")!) return `at most ${n("maxLength")} characters`;
    if (typeof c.pattern === "string") {
      try {
        if (!new RegExp(c.pattern, "u").test(v)) return `must match ${c.pattern}`;
      } catch {
        // a pattern the browser cannot compile is left to the server
      }
    }
    if (c.format === "email" && !/^[^@\s]+@[^@\s]+$/.test(v)) return "must be an email address";
  }
  if (typeof v === "number") {
    if (Number.isNaN(v)) return "must be a number";
    if (step.type === "integer" && !Number.isInteger(v)) return "must be a whole number";
    if (n("min") !== undefined && v < n("min")!) return `at least ${n("min")}`;
    if (n("max") !== undefined && v > n("max")!) return `at most ${n("max")}`;
    if (n("exclusiveMin") !== undefined && v <= n("exclusiveMin")!) return `more than ${n("exclusiveMin")}`;
    if (n("exclusiveMax") !== undefined && v >= n("exclusiveMax")!) return `less than ${n("exclusiveMax")}`;
  }
  if (Array.isArray(v)) {
    if (n("minItems") !== undefined && v.length < n("minItems")!) return `at least ${n("minItems")} items`;
    if (n("maxItems") !== undefined && v.length > n("maxItems")!) return `at most ${n("maxItems")} items`;
  }
  if (step.widget === "select" && step.options && !step.options.includes(String(v))) return "choose one of the options";
  return "";
}

function initial(s: FormStep): unknown {
  if (s.default !== undefined) return s.default;
  if (s.widget === "switch") return false;
  if (s.widget === "select") return s.options?.[0];
  return undefined;
}

function StepInput(props: { step: FormStep; value: unknown; onChange: (v: unknown) => void; setBadJSON: (b: boolean) => void }) {
  const s = props.step;
  const v = props.value;
  const c = s.constraints ?? {};
  const id = "step-" + (s.name ?? "value");
  switch (s.widget) {
    case "switch":
      return (
        <label class="check switch">
          <input id={id} type="checkbox" role="switch" checked={v === true} onChange={(e) => props.onChange(e.currentTarget.checked)} /> {s.label}
        </label>
      );
    case "select":
      return (
        <select id={id} aria-label={s.label} value={String(v ?? "")} onChange={(e) => props.onChange(e.currentTarget.value)}>
          {s.options?.map((o) => (
            <option key={o}>{o}</option>
          ))}
        </select>
      );
    case "number":
      return (
        <input
          id={id}
          aria-label={s.label}
          type="number"
          step={c.step !== undefined ? String(c.step) : "any"}
          value={v === undefined ? "" : String(v)}
          onInput={(e) => props.onChange(e.currentTarget.value === "" ? undefined : Number(e.currentTarget.value))}
        />
      );
    case "text":
      return <input id={id} aria-label={s.label} value={String(v ?? "")} onInput={(e) => props.onChange(e.currentTarget.value)} />;
    case "textarea":
      return <textarea id={id} aria-label={s.label} rows={4} value={String(v ?? "")} onInput={(e) => props.onChange(e.currentTarget.value)} />;
    default:
      // A list or a group: its value as JSON.
      return (
        <textarea
          id={id}
          aria-label={s.label + " (JSON)"}
          rows={4}
          placeholder={s.widget === "list" ? "[…]" : "{…}"}
          defaultValue={v === undefined ? "" : JSON.stringify(v)}
          onInput={(e) => {
            const t = e.currentTarget.value;
            if (t.trim() === "") {
              props.setBadJSON(false);
              props.onChange(undefined);
              return;
            }
            try {
              props.onChange(JSON.parse(t));
              props.setBadJSON(false);
            } catch {
              props.setBadJSON(true);
            }
          }}
        />
      );
  }
}

export function RunForm(props: { steps: FormStep[]; onSubmit: (values: Record<string, unknown>) => void; onCancel: () => void }) {
  const [i, setI] = useState(0);
  const [values, setValues] = useState<Record<string, unknown>>(() => Object.fromEntries(props.steps.map((s) => [s.name ?? "", initial(s)])));
  const [problem, setProblem] = useState("");
  const [badJSON, setBadJSON] = useState(false);
  const s = props.steps[i];
  const last = i === props.steps.length - 1;
  const go = (next: number | "submit") => {
    const why = badJSON ? "not valid JSON" : check(s, values[s.name ?? ""]);
    if (why) {
      setProblem(why);
      return;
    }
    setProblem("");
    if (next === "submit") {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(values)) if (v !== undefined && v !== "") out[k] = v;
      props.onSubmit(out);
    } else setI(next);
  };
  return (
    <form
      class="card runform"
      aria-label="Run input"
      onSubmit={(e) => {
        e.preventDefault();
        go(last ? "submit" : i + 1);
      }}
    >
      <p class="muted">
        Step {i + 1} of {props.steps.length}
      </p>
      <Labeled label={s.label + (s.required ? " *" : "")} hint={s.description}>
        <StepInput key={i} step={s} value={values[s.name ?? ""]} onChange={(v) => setValues({ ...values, [s.name ?? ""]: v })} setBadJSON={setBadJSON} />
      </Labeled>
      {problem && (
        <div class="field-error" role="alert">
          {problem}
        </div>
      )}
      <div class="row">
        <button type="button" disabled={i === 0} onClick={() => (setProblem(""), setI(i - 1))}>
          Back
        </button>
        <button type="submit" class="primary">
          {last ? "Submit" : "Next"}
        </button>
        <button type="button" onClick={props.onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
