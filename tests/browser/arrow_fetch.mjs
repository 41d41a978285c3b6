// Opens Bridge's HTTP API in headless Chromium, loads the Arrow JS library (apache-arrow, from
// node_modules: nothing is fetched from the internet) into the page, and reads an Arrow IPC
// stream with `tableFromIPC`, as a web app would. Prints what the page saw as JSON.
//
//   node arrow_fetch.mjs http://127.0.0.1:PORT 'v1/datasets/yellow/p90?from=...'
import { chromium } from 'playwright-core';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const [base, query] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  // A page on Bridge's own origin, so the fetch below is same-origin.
  await page.goto(`${base}/v1/datasets`);
  await page.addScriptTag({ path: path.join(here, 'node_modules/apache-arrow/Arrow.es2015.min.js') });
  const seen = await page.evaluate(async (query) => {
    const response = await fetch(`/${query}`, { headers: { Accept: 'application/vnd.apache.arrow.stream' } });
    const table = Arrow.tableFromIPC(new Uint8Array(await response.arrayBuffer()));
    const distances = table.getChild('trip_distance');
    return {
      status: response.status,
      contentType: response.headers.get('content-type'),
      manifestVersion: response.headers.get('bridge-manifest-version'),
      rows: table.numRows,
      columns: table.schema.fields.map((f) => f.name),
      threshold: table.schema.metadata.get('bridge.p90.threshold'),
      distanceSum: distances ? distances.toArray().reduce((a, b) => a + b, 0) : null,
    };
  }, query);
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
}
