// Drives the admin port's status page in headless Chromium, as an operator would, and prints
// what it saw as JSON (tests/python/test_status_page.py checks it against pyarrow and DuckDB).
//
//   node status_page.mjs ADMIN_URL DATASET_DIR NEW_FILE BROKEN_NAME SCREENSHOT [TOKEN]
//
// 1. The page shows the dataset's rows.
// 2. NEW_FILE is copied into DATASET_DIR: the version and rows change on the page, no reload.
// 3. A broken file BROKEN_NAME lands: it appears among the quarantined files with its reason.
// 4. The form runs a p90 summary; the page's threshold is returned.
// Every wait is on a condition in the page, with a deadline.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';

const [admin, dir, newFile, brokenName, screenshot, token] = process.argv.slice(2);
const DEADLINE = 60_000;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const seen = {};
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
  await page.goto(admin + '/');
  if (token) {
    await page.waitForSelector('#auth.show', { timeout: DEADLINE });
    seen.askedForToken = true;
    await page.fill('#token', token);
    await page.click('#auth-form button');
  }
  const row = 'tr[data-dataset="yellow"]';
  await page.waitForSelector(row, { timeout: DEADLINE });
  const read = async () => ({
    version: Number(await page.textContent(`${row} .version`)),
    rows: Number((await page.textContent(`${row} .rows`)).replace(/,/g, '')),
    files: Number(await page.textContent(`${row} .files`)),
  });
  seen.before = await read();
  let reloads = 0;
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) reloads += 1; });

  fs.copyFileSync(newFile, path.join(dir, path.basename(newFile)));
  await page.waitForFunction(([sel, files]) => Number(document.querySelector(sel + ' .files')?.textContent) > files,
    [row, seen.before.files], { timeout: DEADLINE });
  seen.after = await read();

  fs.writeFileSync(path.join(dir, brokenName), 'this is not a parquet file');
  const item = `#quarantined li[data-key$="${brokenName}"]`;
  await page.waitForSelector(item, { timeout: DEADLINE });
  seen.quarantined = { key: await page.getAttribute(item, 'data-key'), reason: await page.textContent(`${item} .reason`) };

  await page.fill('#form-from', '2024-01-01');
  await page.fill('#form-to', '2024-02-01');
  await page.selectOption('#form-kind', 'p90');
  await page.click('#form-run');
  await page.waitForSelector('#form-result td[data-col="threshold"]', { timeout: DEADLINE });
  seen.threshold = Number(await page.textContent('#form-result td[data-col="threshold"]'));
  seen.tripsAbove = Number(await page.textContent('#form-result td[data-col="trips_above"]'));
  seen.badge = await page.getAttribute('#form-badge .badge', 'class');
  seen.recentRows = await page.locator('#recent tbody tr').count();
  seen.reloads = reloads;
  seen.local = await page.textContent('#local');
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
}
