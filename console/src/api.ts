// BudApp's API, with the admin token from this browser tab's session.

const tokenKey = "bud.admin-token";

export function getToken(): string | null {
  return sessionStorage.getItem(tokenKey);
}

export function setToken(t: string | null) {
  if (t === null) sessionStorage.removeItem(tokenKey);
  else sessionStorage.setItem(tokenKey, t);
}

/** An error answer of BudApp: its envelope's code, message and per-field problems. */
export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public fields: Record<string, string> = {},
  ) {
    super(message);
  }
}

let onUnauthorized: () => void = () => {};
export function whenUnauthorized(f: () => void) {
  onUnauthorized = f;
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Authorization: "Bearer " + (getToken() ?? "") };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp: Response;
  try {
    resp = await fetch("/api" + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, "network", "BudApp cannot be reached: " + String(e));
  }
  const text = await resp.text();
  let data: any = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!resp.ok) {
    if (resp.status === 401) onUnauthorized();
    const e = data?.error ?? {};
    throw new ApiError(resp.status, e.code ?? "http_" + resp.status, e.message ?? resp.statusText, e.fields ?? {});
  }
  return data as T;
}

export interface Page<T> {
  data: T[];
  total: number;
  limit: number;
  offset: number;
}

export interface Project {
  id: string;
  name: string;
  description: string;
  created_at: string;
  updated_at: string;
}

export interface Settings {
  min_concurrency: number;
  max_concurrency: number;
  queue_timeout_ms?: number;
  autoscale: boolean;
  cache: { enabled: boolean; ttl_seconds: number; nondeterministic?: boolean };
  rate_limit: { enabled: boolean; requests_per_minute: number; burst: number; tokens_per_minute: number };
}

export interface Deployment {
  id: string;
  project_id: string;
  name: string;
  kind: "model" | "prompt";
  upstream?: { base_url: string; model: string; api_key_set: boolean };
  prompt?: { id: string; version: number | null };
  default_params: Record<string, unknown> | null;
  settings: Settings;
  created_at: string;
}

export interface APIKey {
  id: string;
  name: string;
  prefix: string;
  created_at: string;
  expires_at: string | null;
  last_used_at: string | null;
  revoked: boolean;
  secret?: string;
}

export interface Prompt {
  id: string;
  project_id: string;
  name: string;
  description: string;
  tags: string[];
  default_version: number;
  latest_version: number;
  updated_at: string;
  version?: number;
  document?: Doc;
}

export interface PromptVersion {
  prompt_id: string;
  version: number;
  note: string;
  created_at: string;
  document?: Doc;
}

export interface Variable {
  name?: string;
  type: string;
  description?: string;
  default?: unknown;
  required?: boolean;
  options?: string[];
  items?: Variable;
  variables?: Variable[];
  validation?: { basic?: Record<string, unknown>; custom?: unknown[] };
}

export interface Shape {
  type: "text" | "structured";
  variables?: Variable[];
}

export interface Message {
  role: string;
  content: string;
  tool_calls?: unknown[];
  tool_call_id?: string;
}

export interface Tool {
  type: string;
  connection_id?: string;
  allowed_tools?: string[];
  active?: boolean;
  require_approval?: unknown;
  name?: string;
  description?: string;
  parameters?: unknown;
}

/** A prompt document, as prompt/schema.json describes it. */
export interface Doc {
  deployment: string;
  model_params?: Record<string, unknown>;
  system_prompt: string;
  messages?: Message[];
  input: Shape;
  output: Shape;
  tools?: Tool[];
  allow_multiple_calls: boolean;
  llm_retry_limit: number;
  settings?: Partial<Settings> & { validation_deployment?: string };
}

export interface Connection {
  id: string;
  name: string;
  kind: string;
}

export interface FormStep {
  name?: string;
  label: string;
  description?: string;
  widget: "text" | "textarea" | "number" | "switch" | "select" | "list" | "group";
  type: string;
  default?: unknown;
  required: boolean;
  options?: string[];
  constraints?: Record<string, unknown>;
}

export interface Usage {
  input_tokens: number;
  output_tokens: number;
  total_tokens: number;
}

export interface RunSummary {
  id: string;
  project_id: string;
  prompt_id: string | null;
  prompt_version: number | null;
  deployment: string;
  model: string;
  source: string;
  status: string;
  usage: Usage;
  latency_ms: number;
  error: unknown;
  created_at: string;
  finished_at: string;
}

export interface Run extends RunSummary {
  input: unknown;
  rendered_messages: { role: string; content: string }[] | null;
  model_calls: Record<string, unknown>[] | null;
  tool_calls: Record<string, unknown>[] | null;
  output: {
    text?: string;
    parsed?: unknown;
    approval_requests?: { id: string; call_id: string; name: string; server_label: string; arguments: string }[];
    [k: string]: unknown;
  } | null;
  replay_of: string | null;
}

export interface CompareResult {
  index: number;
  run_id: string | null;
  status: string;
  model: string;
  output_text: string;
  parsed: unknown;
  error: { code?: string; message?: string } | null;
  usage: Usage;
  latency_ms: number;
  model_calls: number;
  validation: string;
}

export function defaultSettings(): Settings {
  return {
    min_concurrency: 0,
    max_concurrency: 100,
    autoscale: false,
    cache: { enabled: false, ttl_seconds: 0 },
    rate_limit: { enabled: false, requests_per_minute: 0, burst: 0, tokens_per_minute: 0 },
  };
}

/** Reads a value the server put into index.html's meta tags. */
export function meta(name: string): string {
  return document.querySelector(`meta[name="${name}"]`)?.getAttribute("content") ?? "";
}
