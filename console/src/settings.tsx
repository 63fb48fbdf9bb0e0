import { Settings } from "./api";
import { FieldError, Labeled, val } from "./ui";

const num = (s: string) => (s.trim() === "" ? 0 : Number(s));

/** The serving settings of a deployment: concurrency, autoscale, cache, rate limit. */
export function SettingsForm(props: { value: Settings; onChange: (s: Settings) => void; fields: Record<string, string>; prefix: string }) {
  const s = props.value;
  const set = (patch: Partial<Settings>) => props.onChange({ ...s, ...patch });
  const f = (p: string) => <FieldError fields={props.fields} path={props.prefix + p} />;
  return (
    <fieldset class="settings">
      <legend>Serving settings</legend>
      <Labeled label="Min concurrency">
        <input type="number" min="0" value={s.min_concurrency} onInput={(e) => set({ min_concurrency: num(val(e)) })} />
        {f("min_concurrency")}
      </Labeled>
      <Labeled label="Max concurrency" hint="1 to 100000">
        <input type="number" min="0" value={s.max_concurrency} onInput={(e) => set({ max_concurrency: num(val(e)) })} />
        {f("max_concurrency")}
      </Labeled>
      <label class="check" title="Autoscaling is a setting of the BudPrompt workers, which serve every deployment's runs (BUD_WORKER_AUTOSCALE); a deployment's share of them is its min concurrency.">
        <input type="checkbox" checked={false} disabled /> Autoscale: set on the workers (BUD_WORKER_AUTOSCALE), not per deployment
        {f("autoscale")}
      </label>
      <label class="check">
        <input type="checkbox" checked={s.cache.enabled} onChange={(e) => set({ cache: { ...s.cache, enabled: e.currentTarget.checked } })} /> Caching
      </label>
      <Labeled label="Cache TTL (s)">
        <input type="number" min="0" value={s.cache.ttl_seconds} onInput={(e) => set({ cache: { ...s.cache, ttl_seconds: num(val(e)) } })} />
        {f("cache.ttl_seconds")}
      </Labeled>
      <label class="check">
        <input
          type="checkbox"
          checked={s.rate_limit.enabled}
          onChange={(e) => set({ rate_limit: { ...s.rate_limit, enabled: e.currentTarget.checked } })}
        />{" "}
        Rate limiting
      </label>
      <Labeled label="Requests / min">
        <input
          type="number"
          min="0"
          value={s.rate_limit.requests_per_minute}
          onInput={(e) => set({ rate_limit: { ...s.rate_limit, requests_per_minute: num(val(e)) } })}
        />
        {f("rate_limit.requests_per_minute")}
      </Labeled>
      <Labeled label="Burst">
        <input type="number" min="0" value={s.rate_limit.burst} onInput={(e) => set({ rate_limit: { ...s.rate_limit, burst: num(val(e)) } })} />
        {f("rate_limit.burst")}
      </Labeled>
      <Labeled label="Tokens / min">
        <input
          type="number"
          min="0"
          value={s.rate_limit.tokens_per_minute}
          onInput={(e) => set({ rate_limit: { ...s.rate_limit, tokens_per_minute: num(val(e)) } })}
        />
        {f("rate_limit.tokens_per_minute")}
      </Labeled>
    </fieldset>
  );
}
