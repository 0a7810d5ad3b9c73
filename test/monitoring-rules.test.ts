/**
 * monitoring/: the Prometheus rules are valid (`promtool check rules`), their unit tests pass
 * (`promtool test rules monitoring/*.test.yml`), every alert carries severity, summary and
 * description and is tested both firing and NOT firing, and the rules name the metrics the code
 * exports (the library's METRIC names and the SLO threshold among its histogram buckets; doctor's
 * fixed names). promtool is a real part: skipped with a message outside CI, a failure under CI=true.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { DURATION_BUCKETS, METRIC } from '../src/store/metrics.js';
import { findPart, requirePart } from './helpers/topology.js';

const DIR = fileURLToPath(new URL('../../monitoring/', import.meta.url));
const files = readdirSync(DIR).sort();
const ruleFiles = files.filter((f) => f.endsWith('.rules.yml'));
const testFiles = files.filter((f) => f.endsWith('.test.yml'));

function promtool(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(findPart('promtool')!, args, { cwd: DIR, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('error', (err) => (out += `cannot run promtool: ${err.message}\n`));
    child.on('close', (code) => resolve({ code, out }));
  });
}

interface Rule {
  file: string;
  alert: string;
  text: string;
}

/** The alerting rules of a rules file, each with its text (the file is ours: one rule per `- alert:` block). */
function alertsOf(file: string): Rule[] {
  const lines = readFileSync(join(DIR, file), 'utf8').split('\n');
  const rules: Rule[] = [];
  let current: Rule | undefined;
  for (const line of lines) {
    const start = /^\s+- (alert|record): (\S+)/.exec(line);
    if (start) {
      current = start[1] === 'alert' ? { file, alert: start[2]!, text: '' } : undefined;
      if (current) rules.push(current);
      continue;
    }
    if (current) current.text += line + '\n';
  }
  return rules;
}

const alerts = ruleFiles.flatMap(alertsOf);
const tests = testFiles.map((f) => readFileSync(join(DIR, f), 'utf8')).join('\n');

describe('monitoring/ rules', () => {
  it('has the rules and their tests', () => {
    assert.deepEqual(ruleFiles, ['doctor.rules.yml', 'session-store.rules.yml']);
    assert.deepEqual(testFiles, ['doctor.test.yml', 'session-store.test.yml']);
    assert.deepEqual([...new Set(alerts.map((a) => a.alert))].sort(), [
      'SessionSaveErrorRatioHigh',
      'SessionSaveLatencyBudgetBurn',
      'SessionSaveTenantMismatch',
      'SessionStoreSchemaBroken',
      'TsmDoctorCheckFailing',
      'TsmDoctorMetricsAbsent',
      'TsmDoctorNotRunRecently',
    ]);
  });

  it('every alert has a severity label (critical or warning), a summary and a description', () => {
    for (const a of alerts) {
      assert.match(a.text, /\n\s+labels:\n(?:\s+\w+: .*\n)*?\s+severity: (critical|warning)\n/, `${a.alert} (${a.file}): severity`);
      assert.match(a.text, /\n\s+annotations:\n/, `${a.alert}: annotations`);
      assert.match(a.text, /\n\s+summary: \S/, `${a.alert}: summary`);
      assert.match(a.text, /\n\s+description: \S/, `${a.alert}: description`);
    }
  });

  it('every alert is tested firing and NOT firing', () => {
    for (const name of new Set(alerts.map((a) => a.alert))) {
      const quiet = new RegExp(`alertname: ${name}\\n\\s+exp_alerts: \\[\\]`);
      const firing = new RegExp(`alertname: ${name}\\n\\s+exp_alerts:\\n\\s+- exp_labels:`);
      assert.match(tests, quiet, `${name}: a test where it does not fire`);
      assert.match(tests, firing, `${name}: a test where it fires`);
    }
  });

  it("the rules name the metrics the code exports, and the latency SLO threshold is one of the histogram's buckets", () => {
    // Metric names outside comments, not the recorded `job:…:…` names.
    const code = (file: string): string =>
      readFileSync(join(DIR, file), 'utf8')
        .split('\n')
        .filter((l) => !/^\s*#/.test(l))
        .join('\n');
    const store = code('session-store.rules.yml');
    const used = new Set(store.match(/(?<![:\w])session_save_[a-z_]+\b(?!:)/g) ?? []);
    const exported = new Set([METRIC.attempts, METRIC.errors, `${METRIC.duration}_bucket`, `${METRIC.duration}_count`]);
    assert.deepEqual([...used].filter((m) => !exported.has(m)), [], 'metric names the library does not export');
    for (const m of exported) assert.ok(used.has(m), `${m} is used`);
    const thresholds = new Set([...store.matchAll(/le="([^"]+)"/g)].map((m) => Number(m[1])));
    assert.deepEqual([...thresholds], [0.25]);
    assert.ok(DURATION_BUCKETS.includes(0.25), 'le="0.25" is a bucket boundary');

    const doctor = code('doctor.rules.yml');
    const names = new Set(doctor.match(/\btsm_doctor_[a-z_]+\b/g) ?? []);
    const fixed = ['tsm_doctor_check_status', 'tsm_doctor_run_timestamp_seconds', 'tsm_doctor_run_duration_seconds', 'tsm_doctor_run_ok'];
    assert.deepEqual([...names].filter((n) => !fixed.includes(n)), [], "doctor's metric names (fixed by the doctor's metrics file)");
  });
});

describe('promtool', { skip: requirePart('promtool') }, () => {
  it('check rules: every rules file is valid', async () => {
    const r = await promtool(['check', 'rules', ...ruleFiles]);
    assert.equal(r.code, 0, r.out);
    for (const f of ruleFiles) assert.match(r.out, new RegExp(`Checking ${f.replace('.', '\\.')}\\n\\s+SUCCESS`));
  });

  it('test rules: every unit test passes', async () => {
    const r = await promtool(['test', 'rules', ...testFiles]);
    assert.equal(r.code, 0, r.out);
    assert.equal((r.out.match(/SUCCESS/g) ?? []).length, testFiles.length, r.out);
  });
});
