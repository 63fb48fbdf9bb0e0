import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useState } from "preact/hooks";
import { ApiError } from "./api";
import { navigate } from "./router";

export function Link(props: { href: string; children: ComponentChildren; class?: string }) {
  return (
    <a
      href={props.href}
      class={props.class}
      onClick={(e) => {
        if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
        e.preventDefault();
        navigate(props.href);
      }}
    >
      {props.children}
    </a>
  );
}

/** Loads data for a page; reload() fetches it again. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): { data: T | undefined; error: unknown; reload: () => void } {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<unknown>();
  const [n, setN] = useState(0);
  useEffect(() => {
    let live = true;
    load().then(
      (d) => live && (setData(d), setError(undefined)),
      (e) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, [...deps, n]);
  return { data, error, reload: useCallback(() => setN((x) => x + 1), []) };
}

export function errorText(e: unknown): string {
  if (e instanceof ApiError) {
    const f = Object.entries(e.fields);
    return f.length ? e.message : e.message;
  }
  return e instanceof Error ? e.message : String(e);
}

export function ErrorBanner(props: { error: unknown }) {
  if (!props.error) return null;
  return (
    <div class="error" role="alert">
      {errorText(props.error)}
    </div>
  );
}

/** The problem the API named for one field, shown next to it. */
export function FieldError(props: { fields: Record<string, string>; path: string }) {
  const m = props.fields[props.path];
  if (!m) return null;
  return (
    <div class="field-error" role="alert" data-path={props.path}>
      {m}
    </div>
  );
}

/** A button that asks once more, in place, before it acts. */
export function ConfirmButton(props: { label: string; confirm: string; onConfirm: () => void | Promise<void> }) {
  const [asking, setAsking] = useState(false);
  if (!asking)
    return (
      <button type="button" class="danger-outline" onClick={() => setAsking(true)}>
        {props.label}
      </button>
    );
  return (
    <span class="confirm">
      <button
        type="button"
        class="danger"
        onClick={async () => {
          setAsking(false);
          await props.onConfirm();
        }}
      >
        {props.confirm}
      </button>
      <button type="button" onClick={() => setAsking(false)}>
        Cancel
      </button>
    </span>
  );
}

export function CopyButton(props: { text: string; label?: string }) {
  const [done, setDone] = useState(false);
  return (
    <button
      type="button"
      onClick={async () => {
        try {
          await navigator.clipboard.writeText(props.text);
          setDone(true);
          setTimeout(() => setDone(false), 1500);
        } catch {
          setDone(false);
        }
      }}
    >
      {done ? "Copied" : props.label ?? "Copy"}
    </button>
  );
}

export function Labeled(props: { label: string; children: ComponentChildren; hint?: string; class?: string }) {
  return (
    <label class={"labeled " + (props.class ?? "")}>
      <span>{props.label}</span>
      {props.children}
      {props.hint && <small>{props.hint}</small>}
    </label>
  );
}

export function when(d: string | null | undefined): string {
  if (!d) return "";
  const t = new Date(d);
  return isNaN(t.getTime()) ? d : t.toLocaleString();
}

export function StatusBadge(props: { status: string }) {
  return <span class={"badge badge-" + props.status}>{props.status}</span>;
}

/** The value of the input, textarea or select an event came from. */
export const val = (e: { currentTarget: unknown }): string => (e.currentTarget as HTMLInputElement).value;
