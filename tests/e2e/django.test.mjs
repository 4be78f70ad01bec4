// Issue 15's proof: the original design's Django app (examples/django) with Livekeep plugged in
// by its three settings. Django's users sign in to Django, go live from a Django page that
// imports @livekeep/recorder with a token Django mints, and Django's feed shows the recording
// from Django's own database, written by its webhook view. Then Django is down while a live
// ends: the signed `live.ended` is retried until Django is back, and the feed shows it too.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Server, eventually, launchBrowser, root } from "./harness.mjs";

const djangoDir = join(root, "examples", "django");
const python = join(djangoDir, ".venv", "bin", "python");
const jwtSecret = randomBytes(32).toString("hex");
const webhookSecret = `whsec_${randomBytes(32).toString("base64")}`;
const password = "correct horse battery staple";

/** A free loopback port (the servers are started on it just after). */
function freePort() {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolvePort(port));
    });
  });
}

/** Django's development server with the example's pinned packages, on a SQLite file. */
class Django {
  constructor({ port, livekeepUrl }) {
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    this.dir = mkdtempSync(join(tmpdir(), "livekeep-django-"));
    this.logs = [];
    this.env = {
      ...process.env,
      DJANGO_SQLITE_PATH: join(this.dir, "db.sqlite3"),
      DJANGO_DEBUG: "1", // runserver serves the static files (the recorder package) only then
      DJANGO_ALLOWED_HOSTS: "127.0.0.1",
      LIVEKEEP_URL: livekeepUrl,
      LIVEKEEP_JWT_SECRET: jwtSecret,
      LIVEKEEP_JWT_ISSUER: "hostapp",
      LIVEKEEP_JWT_AUDIENCE: "livekeep",
      LIVEKEEP_WEBHOOK_SECRET: webhookSecret,
      PYTHONUNBUFFERED: "1",
    };
  }

  manage(...args) {
    return execFileSync(python, ["manage.py", ...args], { cwd: djangoDir, env: this.env, stdio: "pipe" }).toString();
  }

  /** `runserver --noreload`; resolves once the feed answers. */
  async start() {
    const child = spawn(python, ["manage.py", "runserver", "--noreload", `127.0.0.1:${this.port}`], {
      cwd: djangoDir,
      env: this.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    child.stdout.on("data", (d) => this.logs.push(d.toString()));
    child.stderr.on("data", (d) => this.logs.push(d.toString()));
    await eventually(
      async () => {
        if (child.exitCode !== null) throw new Error(`django exited:\n${this.logs.join("")}`);
        try {
          return (await fetch(this.url)).status === 200;
        } catch {
          return false;
        }
      },
      { timeout: 30_000, what: "Django's server" },
    );
  }

  async stop() {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await exited;
  }

  async dispose() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The Django feed's text of the article of Livekeep post `liveId`, or "" when absent. */
  async articleText(liveId) {
    const html = await (await fetch(this.url)).text();
    const start = html.indexOf(`data-livekeep-post="${liveId}"`);
    if (start < 0) return "";
    return html.slice(start, html.indexOf("</article>", start));
  }
}

/** `mm:ss` as the example's card writes a duration (seconds rounded, Python rounds halves to even). */
function clocks(seconds) {
  const format = (s) => `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
  return [...new Set([Math.floor(seconds), Math.ceil(seconds)])].filter((s) => Math.abs(s - seconds) <= 0.5).map(format);
}

const env = {};

before(async () => {
  assert.ok(existsSync(python), `${python} is missing: run scripts/bootstrap.sh`);
  assert.ok(
    existsSync(join(root, "recorder-wasm", "pkg", "index.js")),
    "the recorder package is not built: run scripts/build.sh",
  );
  const [djangoPort, livekeepPort] = [await freePort(), await freePort()];
  const livekeepUrl = `http://127.0.0.1:${livekeepPort}`;
  env.django = new Django({ port: djangoPort, livekeepUrl });
  env.django.manage("migrate", "--noinput");
  execFileSync(python, ["manage.py", "createsuperuser", "--noinput", "--username", "alice", "--email", "alice@example.com"], {
    cwd: djangoDir,
    env: { ...env.django.env, DJANGO_SUPERUSER_PASSWORD: password },
    stdio: "pipe",
  });
  env.livekeep = new Server({
    args: [
      "--auth", "jwt",
      "--auth-jwt-secret", jwtSecret,
      "--auth-jwt-issuer", "hostapp",
      "--auth-jwt-audience", "livekeep",
      "--webhook-url", `${env.django.url}/livekeep/webhook/`,
      "--webhook-secret", webhookSecret,
      "--cors-origin", env.django.url,
      "--public-url", livekeepUrl,
    ],
  });
  await env.livekeep.start(`127.0.0.1:${livekeepPort}`);
  await env.django.start();
  env.browser = await launchBrowser();
});

after(async () => {
  await env.browser?.close();
  await env.django?.dispose();
  await env.livekeep?.dispose();
});

/** Signs alice in to Django and opens its go-live page. */
async function signedInLivePage() {
  const context = await env.browser.newContext({ locale: "fr-FR", timezoneId: "Europe/Paris" });
  const page = await context.newPage();
  page.on("pageerror", (error) => env.django.logs.push(`page error: ${error.message}\n`));
  await page.goto(`${env.django.url}/accounts/login/?next=/live/`);
  await page.locator('input[name="username"]').fill("alice");
  await page.locator('input[name="password"]').fill(password);
  await page.getByRole("button", { name: "Se connecter" }).click();
  await page.waitForURL(`${env.django.url}/live/`);
  return { context, page };
}

/** Goes live with `title` for five seconds, with `during` run while it records, then stops. */
async function recordFiveSeconds(page, title, during = async () => {}) {
  const status = page.getByTestId("status");
  await page.getByLabel("Titre du live").fill(title);
  await page.getByRole("button", { name: "Passer en direct" }).click();
  await eventually(async () => (await status.textContent()) === "EN DIRECT", {
    timeout: 30_000,
    what: "the page's status EN DIRECT",
  });
  const started = Date.now();
  await during();
  await new Promise((r) => setTimeout(r, Math.max(0, 5_000 - (Date.now() - started))));
  await page.getByRole("button", { name: "Arrêter" }).click();
  await eventually(async () => /^Enregistrement sauvegardé \(\d+ s\)\.$/.test(await status.textContent()), {
    timeout: 60_000,
    what: "the stop",
  });
}

/** The ended live of `title` on Livekeep (its own API), with its one recording. */
async function livekeepPost(title) {
  const { body } = await env.livekeep.api("GET", "/api/posts/?limit=100");
  const post = body.results.find((p) => p.content === title);
  assert.ok(post, `no Livekeep post "${title}"`);
  assert.equal(post.live_status, "ended");
  assert.equal(post.media_files.length, 1);
  return post;
}

/** Django's feed shows the recording of `post` with its duration, and its <video> plays from Livekeep. */
async function assertDjangoFeedPlays(page, post) {
  const media = post.media_files[0];
  const article = await eventually(
    async () => {
      const text = await env.django.articleText(post.id);
      return text.includes("data-testid=\"recording\"") ? text : false;
    },
    { timeout: 30_000, what: `Django's article of live ${post.id} (${env.django.logs.join("")})` },
  );
  assert.ok(
    clocks(media.duration).some((clock) => article.includes(`Durée : ${clock}`)),
    `Django shows ${article.match(/Durée : [\d:]+/)?.[0]}, Livekeep's media lasts ${media.duration} s`,
  );
  assert.ok(media.duration > 4 && media.duration < 8, `a five-second live lasts ${media.duration} s`);
  assert.ok(article.includes(`📹 ${media.title}`), article);

  await page.goto(env.django.url);
  const video = page.locator(`article[data-livekeep-post="${post.id}"] video`);
  assert.equal(await video.getAttribute("src"), `${env.livekeep.url}/media/${media.id}`);
  await video.evaluate((v) => {
    v.muted = true;
    return v.play();
  });
  await page.waitForFunction(
    (id) => document.querySelector(`article[data-livekeep-post="${id}"] video`)?.currentTime > 0.5,
    post.id,
    { timeout: 15_000 },
  );
}

test("a Django user goes live from a Django page and Django's feed shows and plays the recording", async () => {
  const { context, page } = await signedInLivePage();
  await recordFiveSeconds(page, "Premier live Django");
  const post = await livekeepPost("Premier live Django");
  // Livekeep knows alice by Django's id, under her Django name: no second account, no login.
  assert.equal(post.author.username, "alice");
  await assertDjangoFeedPlays(page, post);
  await context.close();
});

test("a live that ends while Django is down reaches Django's feed once Django is back", async () => {
  const { context, page } = await signedInLivePage();
  await recordFiveSeconds(page, "Pendant la panne", () => env.django.stop());
  const post = await livekeepPost("Pendant la panne");
  // Django is still down: the event waits in Livekeep's outbox, retried.
  await eventually(
    async () => {
      const metrics = await (await fetch(`${env.livekeep.url}/metrics`)).text();
      return /livekeep_webhook_deliveries_total\{type="live.ended",outcome="unreachable"\} [1-9]/.test(metrics);
    },
    { timeout: 30_000, what: "a refused live.ended attempt" },
  );
  await env.django.start();
  await assertDjangoFeedPlays(page, post);
  await context.close();
});
