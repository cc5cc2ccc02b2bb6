// Browser test of the narrator-gateway web page, end to end against a real
// local cluster: redis-server, narrator-broker, the speech worker (and the
// vision and text workers on the tiny checkpoint when they are built) and
// narrator-gateway, all on free loopback ports. playwright-core drives
// Debian's chromium (/usr/bin/chromium, or $NR_CHROMIUM) headless: pick a
// photo, upload it, wait for the caption, check the image's alt text is the
// caption and that the <audio> element's src loads as audio/wav; drop an
// image on the drop box; read the voice list the live speech worker
// offers; speak a text with a voice and a speed; upload a non-image and
// read the error; check every form control has a label. With the model:
// review a run that `narrate submit` made (gallery, only-failed filter, a
// caption corrected and spoken again, approvals by mouse and keyboard, the
// export downloaded), screenshots kept in NR_BUILD_DIR/test-output/.
//
// Exits 0 when it passes, 1 when it fails, 77 (ctest: skipped) with a
// message when node_modules (npm ci here), chromium or a program is missing.
// Environment: NR_SOURCE_DIR, NR_BUILD_DIR (ctest sets both), NR_TEST_KEEP=1
// keeps the temporary folder with the logs.
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, openSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const source = process.env.NR_SOURCE_DIR || path.resolve(here, '../..');
const build = process.env.NR_BUILD_DIR || path.join(source, 'build');
const chromiumPath = process.env.NR_CHROMIUM || '/usr/bin/chromium';
const WAIT_MS = 120000;

function skip(why) {
  console.log('SKIP: ' + why);
  process.exit(77);
}

let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  skip('playwright-core is not installed (run `npm ci` in tests/web): ' + e.message);
}
if (!existsSync(chromiumPath)) skip(chromiumPath + ' is missing (apt-get install -y chromium)');
const bin = (name) => path.join(build, 'bin', name);
for (const p of ['narrator-broker', 'narrator-gateway', 'narrator-worker-speech'])
  if (!existsSync(bin(p))) skip(bin(p) + ' is not built');
const haveModel = existsSync(bin('narrator-worker-vision')) && existsSync(bin('narrator-worker-text'));

const dir = mkdtempSync(path.join(os.tmpdir(), 'nr-web-'));
const children = [];

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function start(name, program, args) {
  const log = openSync(path.join(dir, name + '.log'), 'a');
  const child = spawn(program, args, { stdio: ['ignore', log, log] });
  child.name = name;
  children.push(child);
  child.on('error', (e) => console.error(name + ': ' + e.message));
  return child;
}

async function waitPort(port, what) {
  const end = Date.now() + 20000;
  while (Date.now() < end) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.on('connect', () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(what + ' is not listening on port ' + port);
}

function dumpLogs() {
  for (const child of children) {
    const file = path.join(dir, child.name + '.log');
    if (!existsSync(file)) continue;
    const text = readFileSync(file, 'utf8');
    console.error('---- ' + child.name + ' (last 3000 bytes) ----\n' + text.slice(-3000));
  }
}

async function stopAll() {
  await Promise.all(children.map((c) => new Promise((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) return resolve();
    const timer = setTimeout(() => { c.kill('SIGKILL'); }, 5000);
    c.on('exit', () => { clearTimeout(timer); resolve(); });
    c.kill('SIGTERM');
  })));
}

function check(cond, message) {
  if (!cond) throw new Error(message);
}

// The review view, on a run of five images (one corrupt, a TIFF and a
// HEIC that Chromium cannot draw itself: their cards show the vision
// worker's JPEG thumbnails) narrated by `narrate submit` through the
// cluster (max length 7: new jobs, not the page's uploads, so their
// records name where narrate put them).
async function reviewRun(page, clientEp) {
  const shots = path.join(build, 'test-output');
  mkdirSync(shots, { recursive: true });
  const tree = path.join(dir, 'archive');
  mkdirSync(path.join(tree, 'a'), { recursive: true });
  mkdirSync(path.join(tree, 'b'), { recursive: true });
  const images = path.join(source, 'tests/fixtures/images');
  copyFileSync(path.join(images, 'chelsea_317x211.jpg'), path.join(tree, 'a', 'cat.jpg'));
  copyFileSync(path.join(images, 'astronaut_rgba.png'), path.join(tree, 'b', 'astronaut.png'));
  copyFileSync(path.join(images, 'bad_truncated_header.jpg'), path.join(tree, 'b', 'broken.jpg'));
  // HEIC only where the build decodes it (NR_HEIF, on by default).
  const cache = path.join(build, 'CMakeCache.txt');
  const heif = !existsSync(cache) || !/^NR_HEIF:BOOL=OFF$/m.test(readFileSync(cache, 'utf8'));
  mkdirSync(path.join(tree, 'c'), { recursive: true });
  const formats = path.join(source, 'tests/fixtures/image_formats');
  copyFileSync(path.join(formats, 'tiff_strips.tif'), path.join(tree, 'c', 'scan.tif'));
  if (heif) copyFileSync(path.join(formats, 'heic_photo.heic'), path.join(tree, 'c', 'photo.heic'));
  const cards = heif ? 5 : 4;
  const out = spawnSync(bin('narrate'), ['--broker', clientEp, '--timeout', '60', 'submit', tree,
    '--max-length', '7', '-o', path.join(dir, 'narrated')], { encoding: 'utf8', timeout: WAIT_MS });
  const m = /^run (\S+)$/m.exec(out.stdout || '');
  check(m && out.status === 1, 'narrate submit (one image is corrupt: exit 1): exit ' + out.status + ': ' +
    out.stdout + out.stderr);
  const run = m[1];

  await page.fill('#run-id', run);
  await page.click('#run-load');
  await page.waitForFunction((n) => document.querySelectorAll('#gallery li.card').length === n, cards,
    { timeout: WAIT_MS });
  const headings = await page.$$eval('#gallery li.card h3', (hs) => hs.map((h) => h.textContent).sort());
  const want = 'a/cat.jpg b/astronaut.png b/broken.jpg' + (heif ? ' c/photo.heic' : '') + ' c/scan.tif';
  check(headings.join(' ') === want, 'card headings: ' + headings.join(' '));
  const states = await page.$$eval('#gallery li.card', (lis) => lis.map((li) => li.dataset.state).sort());
  check(states.join(' ') === 'done '.repeat(cards - 1) + 'failed', 'card states: ' + states.join(' '));
  // Each done card shows its thumbnail as the browser decoded it, the
  // TIFF's and the HEIC's too (the originals would say "No preview").
  await page.waitForFunction(() => [...document.querySelectorAll('#gallery li[data-state="done"] img')]
    .every((img) => img.complete && img.naturalWidth > 0), null, { timeout: WAIT_MS });
  const drawn = await page.$$eval('#gallery li[data-state="done"]', (lis) => lis.map((li) => {
    const img = li.querySelector('img');
    return { name: li.querySelector('h3').textContent, src: img.getAttribute('src'), w: img.naturalWidth,
             h: img.naturalHeight, alt: img.alt, original: li.querySelector('a.original').getAttribute('href') };
  }));
  for (const d of drawn) {
    check(/\/thumbnail$/.test(d.src) && d.w > 0 && d.w <= 256 && d.h <= 256,
      d.name + ': not its thumbnail: ' + JSON.stringify(d));
    check(d.alt.length > 0 && d.original === d.src.replace(/thumbnail$/, 'image'), d.name + ': ' + JSON.stringify(d));
  }
  const named = (n) => drawn.find((d) => d.name === n);
  check(named('c/scan.tif').w === 50 && named('c/scan.tif').h === 37, 'TIFF thumbnail ' + JSON.stringify(named('c/scan.tif')));
  if (heif) check(named('c/photo.heic').w === 64 && named('c/photo.heic').h === 48, 'HEIC thumbnail');
  await page.screenshot({ path: path.join(shots, 'review-gallery.png'), fullPage: true });

  await page.check('#only-failed');
  const visible = await page.$$eval('#gallery li.card', (lis) => lis.filter((li) => !li.hidden).map((li) => li.dataset.state));
  check(visible.join(' ') === 'failed', 'only failed shown: ' + visible.join(' '));
  const why = await page.textContent('#gallery li[data-state="failed"] .card-error');
  check(/bad_image|not_an_image/.test(why), 'failed card says why: ' + why);
  await page.uncheck('#only-failed');

  // Correct the first done image's caption: spoken again, both kept.
  const card = '#gallery li[data-state="done"]';
  const id = await page.$eval(card, (li) => li.dataset.job);
  const sel = '#gallery li[data-job="' + id + '"]';
  await page.click(sel + ' button:has-text("Edit caption")');
  const corrected = 'a tabby cat sitting on a wooden table';
  await page.fill('#edit-' + id, corrected);
  await page.click(sel + ' button:has-text("Save and speak")');
  await page.waitForFunction(([s, text]) => {
    const p = document.querySelector(s + ' .caption-text');
    return p && p.textContent === text;
  }, [sel, corrected], { timeout: WAIT_MS });
  const edited = await page.textContent(sel + ' .edited');
  check(edited.startsWith('Corrected; the model wrote: '), 'the model caption is kept: ' + edited);
  const src = await page.getAttribute(sel + ' audio', 'src');
  check(/^\/v1\/jobs\/[0-9a-f]{32}\/audio$/.test(src) && !src.includes(id), 'audio of the spoken correction: ' + src);
  check(await page.getAttribute(sel + ' img', 'alt') === corrected, 'the image alt is the corrected caption');
  // The corrected caption's speech job finishes and plays.
  const audioOk = await page.evaluate(async (u) => {
    const record = u.replace(/\/audio$/, '');
    for (let i = 0; i < 600; i++) { // the record, not the audio: a 409 would be a console error
      const r = await (await fetch(record)).json();
      if (r.state === 'done') return (await fetch(u)).headers.get('content-type');
      if (r.state === 'failed' || r.state === 'cancelled') return r.state;
      await new Promise((res) => setTimeout(res, 200));
    }
    return 'never';
  }, src);
  check(audioOk === 'audio/wav', 'corrected audio: ' + audioOk);

  // Approve it with the mouse and the other done image with the keyboard.
  await page.click(sel + ' button[aria-pressed]');
  await page.waitForSelector(sel + ' button[aria-pressed="true"]', { timeout: WAIT_MS });
  const other = await page.$$eval('#gallery li[data-state="done"]', (lis, first) =>
    lis.map((li) => li.dataset.job).find((j) => j !== first), id);
  await page.focus('#gallery li[data-job="' + other + '"] button[aria-pressed]');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#gallery li[data-job="' + other + '"] button[aria-pressed="true"]', { timeout: WAIT_MS });
  const summaryText = await page.textContent('#run-summary');
  check(summaryText.includes(cards + ' of ' + cards + ' images loaded, 1 failed, 2 approved'), 'summary: ' + summaryText);

  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll('#review input, #review textarea')]
      .filter((el) => !el.labels || el.labels.length === 0).map((el) => el.id));
  check(unlabelled.length === 0, 'review controls without a label: ' + unlabelled.join(', '));
  await page.screenshot({ path: path.join(shots, 'review-approved.png'), fullPage: true });

  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
  const saved = path.join(dir, 'export.jsonl');
  await download.saveAs(saved);
  const lines = readFileSync(saved, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  check(lines.length === 2, 'exported lines: ' + lines.length);
  const mine = lines.find((l) => l.id === id);
  check(mine && mine.alt_text === corrected && mine.edited === true && mine.model_caption,
    'export of the corrected image: ' + JSON.stringify(mine));
  // Each line names where narrate put the image's outputs.
  const sources = lines.map((l) => l.source).sort();
  const approved = (await page.$$eval('#gallery li', (lis) => lis
    .filter((li) => li.querySelector('button[aria-pressed="true"]'))
    .map((li) => li.querySelector('h3').textContent))).sort();
  check(sources.join(' ') === approved.join(' '), 'exported sources: ' + sources.join(' ') + ', approved ' + approved);
  check(download.suggestedFilename() === 'alt-text-' + run + '.jsonl', 'file name: ' + download.suggestedFilename());
  console.log('ok: review of run ' + run + ': filter, correction spoken, 2 approved, export');
}

let browser;
let failed = false;
try {
  // ---- the cluster ----
  const [redisPort, clientPort, workerPort, httpPort] =
    [await freePort(), await freePort(), await freePort(), await freePort()];
  start('redis', 'redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '',
    '--appendonly', 'no', '--dir', dir]);
  await waitPort(redisPort, 'redis-server');
  const clientEp = 'tcp://127.0.0.1:' + clientPort, workerEp = 'tcp://127.0.0.1:' + workerPort;
  start('broker', bin('narrator-broker'), ['--client-endpoint', clientEp, '--worker-endpoint', workerEp,
    '--redis-host', '127.0.0.1', '--redis-port', String(redisPort), '--heartbeat-ms', '250']);
  await waitPort(clientPort, 'narrator-broker');
  const model = path.join(source, 'tests/fixtures/vit-gpt2-tiny');
  start('speech', bin('narrator-worker-speech'), ['--broker', workerEp, '--heartbeat-ms', '250']);
  if (haveModel) {
    for (const stage of ['vision', 'text'])
      start(stage, bin('narrator-worker-' + stage), ['--broker', workerEp, '--heartbeat-ms', '250',
        '--model', model, '--threads', '1']);
  } else {
    console.log('note: narrator-worker-vision/text are not built; only the speech path is tested');
  }
  start('gateway', bin('narrator-gateway'), ['--port', String(httpPort), '--broker', clientEp,
    '--static-dir', path.join(source, 'client/gateway/static'), '--log-level', 'debug']);
  await waitPort(httpPort, 'narrator-gateway');
  const base = 'http://127.0.0.1:' + httpPort;

  // ---- the browser ----
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  const page = await browser.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push('console: ' + m.text()); });
  await page.goto(base + '/');
  check((await page.title()).includes('narrator'), 'page title: ' + await page.title());

  // Every form control has a label (accessible name from a <label>).
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll('input, select, textarea')]
      .filter((el) => !el.labels || el.labels.length === 0).map((el) => el.id || el.name));
  check(unlabelled.length === 0, 'controls without a label: ' + unlabelled.join(', '));
  // The caption prompt field (BLIP) is in the form, labelled like the others.
  const promptLabel = await page.evaluate(() => {
    const el = document.getElementById('prompt');
    return el && el.name === 'prompt' && el.labels.length ? el.labels[0].textContent.trim() : null;
  });
  check(promptLabel === 'Caption starts with', 'prompt field label: ' + promptLabel);
  // The caption language field (PaliGemma) too.
  const languageLabel = await page.evaluate(() => {
    const el = document.getElementById('language');
    return el && el.name === 'language' && el.labels.length ? el.labels[0].textContent.trim() : null;
  });
  check(languageLabel === 'Caption language', 'language field label: ' + languageLabel);

  // Waits for the job box to reach a final state; returns it.
  async function waitJob() {
    await page.waitForFunction(() => ['done', 'failed', 'cancelled'].includes(
      document.getElementById('job').dataset.state), null, { timeout: WAIT_MS });
    return page.$eval('#job', (el) => el.dataset.state);
  }

  // The <audio> element's src loads: metadata with a duration, and the URL
  // answers audio/wav.
  async function checkAudio() {
    const src = await page.$eval('#audio', (a) => a.getAttribute('src') || '');
    check(/^\/v1\/jobs\/[0-9a-f]{32}\/audio$/.test(src), 'audio src: ' + src);
    const info = await page.evaluate(() => new Promise((resolve) => {
      const a = document.getElementById('audio');
      const done = () => resolve({ duration: a.duration, error: a.error && a.error.code, ready: a.readyState });
      if (a.readyState >= 1) return done();
      a.addEventListener('loadedmetadata', done, { once: true });
      a.addEventListener('error', done, { once: true });
      setTimeout(done, 30000);
    }));
    check(!info.error && info.ready >= 1 && info.duration > 0,
      'audio did not load: ' + JSON.stringify(info));
    const head = await page.evaluate(async (u) => {
      const r = await fetch(u);
      const b = new Uint8Array(await r.arrayBuffer());
      return { status: r.status, type: r.headers.get('content-type'),
               riff: String.fromCharCode(...b.slice(0, 4)), size: b.length };
    }, src);
    check(head.status === 200 && head.type === 'audio/wav' && head.riff === 'RIFF' && head.size > 44,
      'audio fetch: ' + JSON.stringify(head));
  }

  if (haveModel) {
    // Pick a photo and submit the form with the keyboard.
    const photo = path.join(source, 'tests/fixtures/images/chelsea_317x211.jpg');
    await page.setInputFiles('#image', photo);
    await page.fill('#max_length', '8');
    await page.focus('#submit');
    await page.keyboard.press('Enter');
    const state = await waitJob();
    const status = await page.textContent('#job-status');
    check(state === 'done', 'image job ended ' + state + ': ' + status + ' / ' +
      (await page.textContent('#error')));
    const caption = (await page.textContent('#caption')).trim();
    check(caption && caption !== '(not written yet)', 'no caption shown: ' + caption);
    const alt = await page.getAttribute('#preview', 'alt');
    check(alt === caption, 'image alt "' + alt + '" is not the caption "' + caption + '"');
    const stages = await page.$$eval('#stages li', (lis) => lis.map((li) => li.dataset.stage + ':' + li.dataset.state));
    check(stages.join(' ') === 'vision:done text:done speech:done', 'stages: ' + stages.join(' '));
    await checkAudio();
    console.log('ok: photo -> caption "' + caption + '" -> audio');

    // Drop another photo on the drop box.
    const png = readFileSync(path.join(source, 'tests/fixtures/images/astronaut_rgba.png')).toString('base64');
    const firstId = await page.$eval('#audio', (a) => a.dataset.job);
    await page.evaluate((b64) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], 'astronaut.png', { type: 'image/png' }));
      document.getElementById('drop').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, png);
    await page.waitForFunction((id) => {
      const a = document.getElementById('audio');
      return a.dataset.job && a.dataset.job !== id;
    }, firstId, { timeout: WAIT_MS });
    check(await waitJob() === 'done', 'dropped image job did not finish');
    await checkAudio();
    console.log('ok: dropped image -> caption "' + (await page.textContent('#caption')).trim() + '"');
  }

  // Speak a text.
  const before = await page.getAttribute('#record-link', 'href');
  await page.fill('#speak-text', 'Hello from the narrator web page.');
  // The voice list comes from the live speech worker (GET /v1/voices):
  // Flite's five voices after "worker default".
  await page.waitForFunction(() => document.getElementById('voice').options.length > 1, null, { timeout: WAIT_MS });
  const voices = await page.$$eval('#voice option', (os) => os.map((o) => o.value));
  check(JSON.stringify(voices) === JSON.stringify(['', 'awb', 'kal', 'kal16', 'rms', 'slt']),
    'voice list from the workers: ' + JSON.stringify(voices));
  console.log('ok: voice list from the live worker: ' + voices.slice(1).join(', '));
  await page.selectOption('#voice', 'kal');
  await page.fill('#speed', '1.5');
  await page.click('#speak');
  // The page shows the new job once its record link changes.
  await page.waitForFunction((old) => document.getElementById('record-link').getAttribute('href') !== old,
    before, { timeout: WAIT_MS });
  check(await waitJob() === 'done', 'speak job did not finish: ' + await page.textContent('#job-status'));
  // The record the page links to names the voice and speed it was given.
  const record = await (await page.request.get(new URL(await page.getAttribute('#record-link', 'href'), page.url()).href)).json();
  check(record.options && record.options.voice === 'kal' && record.options.speed === '1.5',
    'speak options in the record: ' + JSON.stringify(record.options));
  await checkAudio();
  console.log('ok: speak -> audio');

  if (haveModel && existsSync(bin('narrate'))) await reviewRun(page, clientEp);

  // A file that is not an image: the gateway's 415 is shown in the alert box.
  await page.setInputFiles('#image', { name: 'notes.txt', mimeType: 'text/plain',
    buffer: Buffer.from('not a picture') });
  await page.click('#submit');
  await page.waitForSelector('#error:not([hidden])', { timeout: WAIT_MS });
  const error = await page.textContent('#error');
  check(error.includes('not_an_image') && error.includes('415'), 'error shown: ' + error);
  check(await page.getAttribute('#error', 'role') === 'alert', 'the error box is not an alert');
  console.log('ok: non-image upload -> "' + error.trim() + '"');

  const serious = pageErrors.filter((e) => !e.includes('415'));
  check(serious.length === 0, 'page errors: ' + serious.join('; '));
  console.log('PASS');
} catch (e) {
  failed = true;
  console.error('FAIL: ' + (e && e.stack ? e.stack : e));
  dumpLogs();
} finally {
  if (browser) await browser.close().catch(() => {});
  await stopAll();
  if (!process.env.NR_TEST_KEEP) rmSync(dir, { recursive: true, force: true });
  else console.log('logs kept in ' + dir);
}
process.exit(failed ? 1 : 0);
