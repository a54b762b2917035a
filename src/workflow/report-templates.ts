/**
 * Report templates per exam type (modality and body part): the structured fields a report
 * of that exam fills (some required before signature) and the skeleton of its findings.
 * Administrators write them; a draft naming a template may only fill its fields.
 */
import { actorOf, type Principal } from '../access/principal.ts';
import type { SqlDatabase } from '../index/sql.ts';
import { TeleError, type Origin, type TeleRequests } from './tele-requests.ts';

export interface TemplateField { name: string; label: string; required: boolean }

export interface ReportTemplate {
  code: string;
  name: string;
  modality?: string;
  bodyPart?: string;
  fields: TemplateField[];
  /** Skeleton of the findings the reader starts from. */
  findings: string;
  updatedBy: string;
  updatedAt: string;
}

interface Row { code: string; name: string; modality: string | null; body_part: string | null; fields_json: string; findings: string; updated_by: string; updated_at: string }

function templateOf(r: Row): ReportTemplate {
  return {
    code: r.code, name: r.name, ...(r.modality !== null ? { modality: r.modality } : {}), ...(r.body_part !== null ? { bodyPart: r.body_part } : {}),
    fields: JSON.parse(r.fields_json) as TemplateField[], findings: r.findings, updatedBy: r.updated_by, updatedAt: r.updated_at,
  };
}

export class ReportTemplates {
  constructor(private readonly requests: TeleRequests) {}

  /** Creates or replaces a template (administrators). */
  async putTemplate(who: Principal, t: { code: string; name: string; modality?: string; bodyPart?: string; fields: Array<{ name: string; label?: string; required?: boolean }>; findings?: string }, origin: Origin): Promise<ReportTemplate> {
    if (!who.roles.includes('territory-admin') && !who.roles.includes('site-admin') && who.territory !== true) throw new TeleError('forbidden', 'only administrators write report templates');
    if (!/^[a-z0-9][a-z0-9-]{0,63}$/.test(t.code)) throw new TeleError('invalid', 'a template code is 1-64 lower-case letters, digits or -');
    const names = new Set<string>();
    const fields = t.fields.map((f) => {
      const name = f.name.trim();
      if (name === '' || names.has(name)) throw new TeleError('invalid', `template field names must be distinct and non-empty (${JSON.stringify(f.name)})`);
      names.add(name);
      return { name, label: f.label?.trim() || name, required: f.required === true };
    });
    const at = new Date().toISOString();
    return this.requests.sql.transaction(async (tx) => {
      await tx.run(
        `INSERT INTO tele_report_templates (code, name, modality, body_part, fields_json, findings, updated_by, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (code) DO UPDATE SET name = excluded.name, modality = excluded.modality, body_part = excluded.body_part,
           fields_json = excluded.fields_json, findings = excluded.findings, updated_by = excluded.updated_by, updated_at = excluded.updated_at`,
        [t.code, t.name.trim(), t.modality ?? null, t.bodyPart ?? null, JSON.stringify(fields), t.findings ?? '', who.id, at]);
      await this.requests.audit.record({ action: 'tele-template', outcome: 'success', ...actorOf(who), ...origin, details: { template: t.code } }, tx);
      return (await this.template(tx, t.code))!;
    });
  }

  async template(tx: SqlDatabase, code: string): Promise<ReportTemplate | undefined> {
    const row = await tx.get<Row>('SELECT * FROM tele_report_templates WHERE code = ?', [code]);
    return row && templateOf(row);
  }

  /** Templates for an exam: those of its modality and body part, then the more general ones. */
  async templatesFor(filter: { modality?: string; bodyPart?: string }): Promise<ReportTemplate[]> {
    const where: string[] = [];
    const params: string[] = [];
    if (filter.modality !== undefined) {
      where.push('(modality IS NULL OR modality = ?)');
      params.push(filter.modality);
    }
    if (filter.bodyPart !== undefined) {
      where.push('(body_part IS NULL OR body_part = ?)');
      params.push(filter.bodyPart);
    }
    const rows = await this.requests.sql.all<Row>(
      `SELECT * FROM tele_report_templates${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''}
        ORDER BY CASE WHEN modality IS NULL THEN 1 ELSE 0 END + CASE WHEN body_part IS NULL THEN 1 ELSE 0 END, code`, params);
    return rows.map(templateOf);
  }

  /** A draft's template exists and its fields are the template's. */
  async checkDraft(tx: SqlDatabase, code: string | undefined, fields: Record<string, string>): Promise<void> {
    if (code === undefined) return;
    const t = await this.template(tx, code);
    if (!t) throw new TeleError('invalid', `no report template ${code}`);
    const known = new Set(t.fields.map((f) => f.name));
    const unknown = Object.keys(fields).filter((k) => !known.has(k));
    if (unknown.length > 0) throw new TeleError('invalid', `template ${code} has no field ${unknown.join(', ')}`);
  }

  /** Before a signature: the template's required fields are filled. */
  async checkSignable(tx: SqlDatabase, code: string | undefined, fields: Record<string, string>): Promise<void> {
    if (code === undefined) return;
    const t = await this.template(tx, code);
    if (!t) return;
    const missing = t.fields.filter((f) => f.required && (fields[f.name] ?? '').trim() === '').map((f) => f.name);
    if (missing.length > 0) throw new TeleError('incomplete', `the report misses required fields of template ${code}: ${missing.join(', ')}`, missing);
  }
}
