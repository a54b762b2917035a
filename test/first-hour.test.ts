/**
 * A newcomer's first hour, through the command line as they run it (bin/atrium.mjs, the
 * compiled code: `npm run build:server` first): the first start makes an administrator
 * whose password (on the terminal, else in a file) logs in, the login page offers no Pro Santé Connect without OIDC,
 * `atrium peer add` lets a modality in, and `atrium demo` loads a territory QIDO-RS finds.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import pg from 'pg';
import { AtriumProcess } from './support/atrium-process.ts';
import { loginLocal, request } from './support/browser-session.ts';
import { chromiumArgs, chromiumPath, haveChromium } from './support/chromium.ts';
import { dcmtk, haveDcmtk } from './support/dcmtk.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { INS_OIDS, insKeyOf } from '../src/patients/ins.ts';

const root = path.resolve(import.meta.dirname, '..');
const cli = path.join(root, 'bin/atrium.mjs');
// The embedded index (SQLite) unless a configuration names PostgreSQL: a newcomer's steps.
const env: NodeJS.ProcessEnv = { ...process.env };
delete env.DATABASE_URL;
delete env.ATRIUM_CONFIG;

/** A one-shot CLI command. */
function atrium(args: string[], stdin = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('exit', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

/** `atrium serve` of a configuration file, in its own process, with this file's environment. */
const serveOf = (file: string) => new AtriumProcess(file, env);
/** The server's own URL (its log gives DICOMweb's). */
const baseOf = (p: AtriumProcess) => p.url.replace(/\/dicom-web$/, '');
/** The lines logged right after 'atrium is serving' (the first-step hints) reach the pipe. */
const settle = () => new Promise((r) => setTimeout(r, 200));

/** A configuration file on free ports in its own data folder. */
function configFile(dir: string, extra = ''): string {
  const file = path.join(dir, 'atrium.yaml');
  writeFileSync(file, [
    '# my platform',
    `dataDir: ${dir}`,
    'http: { port: 0 }',
    'dimse: { port: 0 }',
    'hl7: { port: 0 }',
    extra,
  ].join('\n'));
  return file;
}

const onceShown = /password, shown this once: (\S+)/;

describe('the first start', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'atrium-first-'));
  const serve = serveOf(configFile(dir));
  const passwordFile = path.join(dir, 'administrator-password');
  let password = '';

  before(async () => {
    await serve.start();
    await settle();
    password = existsSync(passwordFile) ? readFileSync(passwordFile, 'utf8').trim() : '';
  });

  after(async () => {
    await serve.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('makes an administrator whose password, in a file of the data folder (0600) when no terminal reads stderr, logs in over HTTP', async () => {
    assert.ok(password.length >= 12, serve.stdout);
    assert.equal(statSync(passwordFile).mode & 0o777, 0o600);
    assert.ok(!serve.stdout.includes(password) && !serve.stderr.includes(password), 'the log never holds the password');
    assert.ok(serve.logLines().some((l) => l.passwordFile === passwordFile && typeof l.msg === 'string' && l.msg.includes('made the first administrator')));
    // Read, then deleted, as the log asks.
    rmSync(passwordFile);
    const { jar } = await loginLocal(baseOf(serve), 'administrator', password);
    const me = (await (await request(jar, `${baseOf(serve)}/auth/me`)).json()) as { roles: string[] };
    assert.deepEqual(me.roles, ['territory-admin']);
  });

  it('says where DIMSE and HL7 listen, and how to let a modality in', () => {
    assert.match(serve.serving.hl7!, /^MLLP 127\.0\.0\.1:[1-9]\d*$/);
    assert.match(serve.serving.dimse!, /^ATRIUM@127\.0\.0\.1:[1-9]\d*$/);
    assert.ok(serve.logLines().some((l) => typeof l.msg === 'string' && l.msg.includes('atrium peer add <AE> --site LOCAL --store')), serve.stdout);
  });

  it('answers which login methods exist without a session: no Pro Santé Connect when OIDC is not configured', async () => {
    const r = await fetch(`${baseOf(serve)}/auth/methods`);
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { proSanteConnect: false, local: true });
  });

  it('shows the login page without the Pro Santé Connect button, and the printed password opens the portal', { skip: !haveChromium && 'Chromium is not installed' }, async () => {
    const profile = mkdtempSync(path.join(tmpdir(), 'atrium-chromium-'));
    const context = await chromium.launchPersistentContext(profile, { executablePath: chromiumPath, headless: true, args: chromiumArgs, locale: 'en-GB' });
    try {
      const page = context.pages()[0] ?? await context.newPage();
      const methods = page.waitForResponse((r) => r.url().endsWith('/auth/methods'));
      await page.goto(`${baseOf(serve)}/app/`);
      assert.equal((await methods).status(), 200);
      await page.locator('input[name=login]').waitFor();
      assert.equal(await page.getByTestId('psc-login').count(), 0);
      assert.equal(await page.getByText('Pro Santé Connect').count(), 0);
      await page.locator('input[name=login]').fill('administrator');
      await page.locator('input[name=password]').fill(password);
      await page.locator('button[type=submit]').click();
      await page.getByTestId('who').waitFor();
      assert.equal(await page.getByTestId('who').textContent(), 'Administrator');
    } finally {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    }
  });

  it('makes no second administrator at the next start, and the first one still logs in', async () => {
    await serve.stop();
    await serve.start();
    assert.equal(existsSync(passwordFile), false);
    await loginLocal(baseOf(serve), 'administrator', password);
    const listed = await atrium(['user', 'list', '--config', path.join(dir, 'atrium.yaml')]);
    assert.deepEqual((JSON.parse(listed.stdout) as { users: Array<{ login: string }> }).users.map((u) => u.login), ['administrator']);
  });
});

describe('the first start on a terminal', { skip: !existsSync('/usr/bin/script') && 'script(1) is not installed' }, () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'atrium-first-tty-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('writes the administrator\'s password once to the terminal, outside the log lines, and to no file', async () => {
    const file = configFile(dir);
    // script(1) gives the server a terminal, as `npm start` in a shell does.
    const child = spawn('/usr/bin/script', ['-qefc', `${process.execPath} ${cli} serve --config ${file}`, '/dev/null'], { env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    try {
      const lines = () => out.split(/\r?\n/);
      const serving = await new Promise<Record<string, string>>((resolve, reject) => {
        const check = setInterval(() => {
          const line = lines().find((l) => l.includes('"atrium is serving"'));
          if (line) { clearInterval(check); resolve(JSON.parse(line.slice(line.indexOf('{'))) as Record<string, string>); }
        }, 50);
        child.once('exit', (code) => { clearInterval(check); reject(new Error(`script exited with ${code}: ${out}`)); });
      });
      const password = onceShown.exec(out)?.[1];
      assert.ok(password, out);
      assert.equal((out.match(/shown this once/g) ?? []).length, 1);
      assert.ok(!lines().some((l) => l.includes('{') && l.includes(password)), 'no log line holds it');
      assert.ok(lines().some((l) => l.includes('its password was written once to the terminal (stderr), never to the log')));
      assert.equal(existsSync(path.join(dir, 'administrator-password')), false);
      await loginLocal(serving.url!.replace(/\/dicom-web$/, ''), 'administrator', password);
    } finally {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGTERM');
      if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
    }
  });
});

const databaseUrl = process.env.DATABASE_URL;

describe('the first start of two nodes at once on an empty PostgreSQL database', { skip: !databaseUrl && 'needs DATABASE_URL' }, () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'atrium-first-pg-'));
  const schema = `t_${randomBytes(6).toString('hex')}`;

  after(async () => {
    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {});
    await db.end();
    rmSync(dir, { recursive: true, force: true });
  });

  it('makes one administrator, whose password one node gives, and both nodes serve', async () => {
    const nodes = ['a', 'b'].map((name) => {
      const nodeDir = path.join(dir, name);
      mkdirSync(nodeDir);
      return serveOf(configFile(nodeDir, `index: { engine: postgres, url: "${databaseUrl}", schema: ${schema} }`));
    });
    try {
      await Promise.all(nodes.map((n) => n.start()));
      const printed = ['a', 'b'].map((name) => path.join(dir, name, 'administrator-password')).filter((f) => existsSync(f)).map((f) => readFileSync(f, 'utf8').trim());
      assert.equal(printed.length, 1, nodes.map((n) => n.stdout).join('\n'));
      for (const n of nodes) await loginLocal(baseOf(n), 'administrator', printed[0]!);
    } finally {
      await Promise.all(nodes.map((n) => n.stop()));
    }
  });
});

describe('atrium peer add', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'atrium-peer-'));
  const file = configFile(dir);

  after(() => rmSync(dir, { recursive: true, force: true }));

  it('adds a modality to the configuration file, keeping its comments, and serve lets it store', async () => {
    const added = await atrium(['peer', 'add', 'CT_SALLE_1', '--site', 'LOCAL', '--config', file]);
    assert.equal(added.code, 0, added.stderr);
    const text = readFileSync(file, 'utf8');
    assert.match(text, /^# my platform/);
    assert.match(text, /aeTitle: CT_SALLE_1/);
    assert.match(text, /may: \{ store: true, query: false, retrieve: false \}/);
    const workstation = await atrium(['peer', 'add', 'LECTURE', '--site', 'LOCAL', '--host', '127.0.0.1', '--port', '104', '--query', '--retrieve', '--config', file]);
    assert.equal(workstation.code, 0, workstation.stderr);

    const serve = serveOf(file);
    await serve.start();
    await settle();
    try {
      const configuration = serve.logLines().find((l) => l.msg === 'configuration')!;
      assert.deepEqual(configuration.peers, ['CT_SALLE_1', 'LECTURE']);
      assert.ok(!serve.logLines().some((l) => typeof l.msg === 'string' && l.msg.includes('atrium peer add')), 'no hint once a peer is configured');
      if (haveDcmtk) {
        const port = serve.serving.dimse!.split(':')[1]!;
        const stored = path.join(dir, 'ct.dcm');
        writeFileSync(stored, syntheticInstance({ Rows: 4, Columns: 4 }).file);
        const r = await dcmtk('storescu', ['-aet', 'CT_SALLE_1', '-aec', 'ATRIUM', '127.0.0.1', port, stored]);
        assert.equal(r.code, 0, r.output);
        const unknown = await dcmtk('echoscu', ['-aet', 'INCONNU', '-aec', 'ATRIUM', '127.0.0.1', port]);
        assert.notEqual(unknown.code, 0, 'an AE title not added is still refused');
      }
    } finally {
      await serve.stop();
    }
  });

  it('edits atrium.example.yaml in place: its peers: [] becomes a list, every other line stays as it was', async () => {
    const example = readFileSync(path.join(root, 'atrium.example.yaml'), 'utf8');
    const copy = path.join(dir, 'example.yaml');
    writeFileSync(copy, example.replace(/^dataDir: .*$/m, `dataDir: ${dir}`));
    const r = await atrium(['peer', 'add', 'IRM_2', '--site', 'LOCAL', '--config', copy]);
    assert.equal(r.code, 0, r.stderr);
    const edited = readFileSync(copy, 'utf8').split('\n');
    const original = example.split('\n').filter((l) => !l.startsWith('dataDir:'));
    assert.deepEqual(original.filter((l) => !edited.includes(l)), ['peers: []']);
    assert.deepEqual(edited.slice(edited.indexOf('peers:'), edited.indexOf('peers:') + 4), ['peers:', '  - aeTitle: IRM_2', '    site: LOCAL', '    may: { store: true, query: false, retrieve: false }']);
  });

  it('refuses a peer listed already, an unknown site, and a host without a port, leaving the file as it was', async () => {
    const before = readFileSync(file, 'utf8');
    for (const [args, why] of [
      [['CT_SALLE_1', '--site', 'LOCAL'], /already configured/],
      [['IRM_1', '--site', 'NOWHERE'], /not a configured site/],
      [['IRM_1', '--site', 'LOCAL', '--host', '10.0.0.3'], /--host and --port go together/],
      [['A_TITLE_OF_MORE_THAN_16', '--site', 'LOCAL'], /not a valid AE title/],
    ] as const) {
      const r = await atrium(['peer', 'add', ...args, '--config', file]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, why);
    }
    assert.equal(readFileSync(file, 'utf8'), before);
  });

  it('prints the YAML to add when Atrium runs on embedded defaults (no configuration file)', async () => {
    const r = await atrium(['peer', 'add', 'ECHO_1', '--data-dir', dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^peers:\n {2}- aeTitle: ECHO_1\n {4}site: LOCAL\n {4}may: \{ store: true, query: false, retrieve: false \}\n$/);
    assert.match(r.stderr, /no configuration file/);
  });
});

describe('atrium demo', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'atrium-demo-'));
  const other = mkdtempSync(path.join(tmpdir(), 'atrium-demo-other-'));

  after(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(other, { recursive: true, force: true });
  });

  it('loads two sites whose studies QIDO-RS finds, the patient linked across sites by her INS, and a teleradiology request', async () => {
    const loaded = await atrium(['demo', '--data-dir', dir]);
    assert.equal(loaded.code, 0, loaded.stderr);
    const report = JSON.parse(loaded.stdout) as { configFile: string; sites: string[]; studies: Array<{ site: string; StudyInstanceUID: string }>; stored: number; teleradiologyRequest: number };
    assert.deepEqual(report.sites, ['CHU-NORD', 'CLIN-SUD']);
    assert.ok(report.stored > 0);
    const demoPassword = onceShown.exec(loaded.stderr)?.[1];
    assert.ok(demoPassword, loaded.stderr);

    // Served on free ports from the configuration the demo wrote.
    writeFileSync(path.join(dir, 'ports.yaml'), readFileSync(report.configFile, 'utf8') + 'http: { port: 0 }\ndimse: { port: 0 }\nhl7: { port: 0 }\n');
    const serve = serveOf(path.join(dir, 'ports.yaml'));
    await serve.start();
    try {
      const token = readFileSync(path.join(dir, 'api-token'), 'utf8').trim();
      const qido = async (query: string) => {
        const r = await fetch(`${baseOf(serve)}/dicom-web/studies?${query}`, { headers: { authorization: `Bearer ${token}`, accept: 'application/dicom+json' } });
        assert.equal(r.status, 200, await r.clone().text());
        return ((await r.json()) as Array<Record<string, { Value: string[] }>>).map((s) => s['0020000D']!.Value[0]!).sort();
      };
      assert.deepEqual(await qido(''), report.studies.map((s) => s.StudyInstanceUID).sort());
      // Élodie Martin: today's CT at CHU-NORD, her priors at CLIN-SUD, one person by her test INS.
      const ins = `2780475113042${insKeyOf('2780475113042')}`;
      const hers = await qido(`PatientID=${ins}&IssuerOfPatientID=${INS_OIDS.NIR_TEST}`);
      assert.equal(hers.length, 3);
      assert.deepEqual(new Set(report.studies.filter((s) => hers.includes(s.StudyInstanceUID)).map((s) => s.site)), new Set(['CHU-NORD', 'CLIN-SUD']));

      const { jar } = await loginLocal(baseOf(serve), 'demo.manip', demoPassword);
      const tele = await request(jar, `${baseOf(serve)}/api/teleradiology/requests/${report.teleradiologyRequest}`);
      assert.equal(tele.status, 200, await tele.clone().text());
      assert.equal(((await tele.json()) as { urgency: string }).urgency, 'urgent');
    } finally {
      await serve.stop();
    }

    const again = await atrium(['demo', '--data-dir', dir]);
    assert.equal(again.code, 0, again.stderr);
    const second = JSON.parse(again.stdout) as { stored: number; alreadyStored: number; teleradiologyRequest: number };
    assert.equal(second.stored, 0, 'loading it again stores nothing new');
    assert.equal(second.teleradiologyRequest, report.teleradiologyRequest);
    assert.doesNotMatch(again.stderr, onceShown);
  });

  it('refuses a database holding other patient records, unless --force', async () => {
    const file = path.join(other, 'mine.dcm');
    writeFileSync(file, syntheticInstance({ PatientID: 'REAL-1', Rows: 4, Columns: 4 }).file);
    const imported = await atrium(['import', file, '--data-dir', other]);
    assert.equal(imported.code, 0, imported.stderr);
    const refused = await atrium(['demo', '--data-dir', other]);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /1 patient record\(s\) that are not the demo's.*--force/);
    const forced = await atrium(['demo', '--force', '--data-dir', other]);
    assert.equal(forced.code, 0, forced.stderr);
  });
});

describe('npm test\'s pre-test check', () => {
  it('names the missing Debian packages and how to install them, without failing', async () => {
    // A PATH without DCMTK or openssl, as on a fresh machine (bash itself is called by its path).
    const r = await new Promise<{ code: number; stdout: string }>((resolve) => {
      const child = spawn('/bin/bash', [path.join(root, '.ci/check-tools')], { env: { PATH: '/nonexistent' }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      child.stdout.on('data', (d) => { stdout += d; });
      child.on('exit', (code) => resolve({ code: code ?? 1, stdout }));
    });
    assert.equal(r.code, 0);
    assert.match(r.stdout, /missing, and the tests that need them will be skipped: .*dcmtk.*openssl/);
    assert.match(r.stdout, /\.ci\/run installs them/);
    assert.match(r.stdout, /DATABASE_URL is not set: the PostgreSQL runs are skipped/);
  });

  it('says nothing of packages when every one is installed', { skip: execFileSync('/bin/bash', [path.join(root, '.ci/missing-packages')]).length > 0 && 'some test packages are missing here' }, () => {
    const out = execFileSync('/bin/bash', [path.join(root, '.ci/check-tools')], { env: { ...process.env, DATABASE_URL: 'postgres://x' } }).toString();
    assert.equal(out, '');
  });
});
