// The page on a phone screen (390×844): nothing overflows sideways, the controls stay reachable
// by keyboard with labels, and screenshots of the feed and of a live land in tests/artifacts/.
import { before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { goLive, root, serverAndBrowser, signUp, stopLive, uniqueName, waitForClock } from "./harness.mjs";

const artifacts = join(root, "tests", "artifacts");
before(() => mkdirSync(artifacts, { recursive: true }));
const env = serverAndBrowser();

async function assertNoSidewaysScroll(page, where) {
  const { scroll, width } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    width: window.innerWidth,
  }));
  assert.ok(scroll <= width, `${where}: the page is ${scroll}px wide on a ${width}px screen`);
}

test("on a 390×844 phone the live and the feed fit the screen and work from the keyboard", async () => {
  const context = await env.browser.newContext({
    locale: "fr-FR",
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
  });
  const page = await context.newPage();
  await page.goto(env.server.url);
  await assertNoSidewaysScroll(page, "sign-up");
  await signUp(page, uniqueName("phone"));

  // Keyboard only: the title field, then Tab to the labelled "go live" button, then Enter.
  await page.getByLabel("Titre du live").focus();
  await page.keyboard.type("Live sur mobile");
  await page.keyboard.press("Tab");
  const focused = await page.evaluate(() => document.activeElement?.textContent);
  assert.equal(focused, "Passer en direct");
  await page.keyboard.press("Enter");
  await page.getByTestId("clock").waitFor();
  await waitForClock(page, "00:03");
  await assertNoSidewaysScroll(page, "live");
  await page.screenshot({ path: join(artifacts, "live-phone.png") });
  await stopLive(page);

  await page.locator('[data-testid="post"] video').first().waitFor();
  await page.waitForFunction(() => document.querySelector('[data-testid="post"] video')?.readyState >= 2);
  await assertNoSidewaysScroll(page, "feed");
  await page.locator('[data-testid="post"]').first().scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(artifacts, "feed-phone.png") });
  await context.close();
});

test("on a desktop screen the feed is a grid of playable recordings", async () => {
  const context = await env.browser.newContext({ locale: "fr-FR", viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(env.server.url);
  await page.locator('[data-testid="post"] video').first().waitFor();
  await page.waitForFunction(() => document.querySelector('[data-testid="post"] video')?.readyState >= 2);
  await assertNoSidewaysScroll(page, "desktop feed");
  await page.screenshot({ path: join(artifacts, "feed-desktop.png") });
  await context.close();
});
