import { render } from "preact";
import { useState } from "preact/hooks";
import { api, ApiError, getToken, setToken, whenUnauthorized } from "./api";
import { DeployFlow } from "./deployflow";
import { Home } from "./home";
import { ProjectPage } from "./project";
import { PromptEditor } from "./editor";
import { RunPage } from "./runs";
import { match, navigate, useLocation } from "./router";
import { ErrorBanner, Link, val } from "./ui";
import "./style.css";

function SignIn(props: { onIn: () => void }) {
  const [token, setTok] = useState("");
  const [error, setError] = useState<unknown>();
  return (
    <main class="signin">
      <h1>Bud</h1>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          setToken(token.trim());
          try {
            await api("GET", "/projects?limit=1");
            props.onIn();
          } catch (err) {
            setToken(null);
            setError(err instanceof ApiError && err.status === 401 ? new Error("That admin token is not accepted.") : err);
          }
        }}
      >
        <label class="labeled">
          <span>Admin token</span>
          <input type="password" name="token" autocomplete="off" value={token} onInput={(e) => setTok(val(e))} required />
          <small>`bud dev` prints it and keeps it in .bud/admin-token. It stays in this tab only.</small>
        </label>
        <ErrorBanner error={error} />
        <button type="submit" class="primary">
          Sign in
        </button>
      </form>
    </main>
  );
}

function App() {
  const [signedIn, setSignedIn] = useState(getToken() !== null);
  const loc = useLocation();
  whenUnauthorized(() => {
    setToken(null);
    setSignedIn(false);
  });
  if (!signedIn) return <SignIn onIn={() => setSignedIn(true)} />;
  const path = loc.pathname;
  let page;
  let m: Record<string, string> | null;
  if (path === "/" || path === "") page = <Home />;
  else if (path === "/deploy") page = <DeployFlow />;
  else if ((m = match("/projects/:id/prompts/new", path))) page = <PromptEditor projectId={m.id} />;
  else if ((m = match("/projects/:id", path))) page = <ProjectPage id={m.id} tab={loc.searchParams.get("tab") ?? "deployments"} />;
  else if ((m = match("/prompts/:id", path))) page = <PromptEditor promptId={m.id} key={m.id} />;
  else if ((m = match("/runs/:id", path))) page = <RunPage id={m.id} key={m.id} />;
  else page = <p>No page at {path}.</p>;
  return (
    <>
      <header class="top">
        <Link href="/" class="brand">
          Bud
        </Link>
        <nav>
          <Link href="/">Projects and prompts</Link>
          <Link href="/deploy">Deploy a prompt</Link>
        </nav>
        <button
          type="button"
          onClick={() => {
            setToken(null);
            setSignedIn(false);
            navigate("/");
          }}
        >
          Sign out
        </button>
      </header>
      <main>{page}</main>
    </>
  );
}

render(<App />, document.getElementById("root")!);
