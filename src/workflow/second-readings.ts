/**
 * Second readings (télé-expertise): a professional asks an expert of an organ specialty for
 * an opinion on an exam already read; the expert, named or on call for the specialty, sees
 * the study by an assignment grant and answers with their own findings and conclusion, and
 * with their agreement with the first report (agree, partial, disagree). Answered once; the
 * grant is revoked with the answer. Every step is audited.
 */
import type { Principal } from '../access/principal.ts';
import type { SqlDatabase } from '../index/sql.ts';
import { requireRadiologist, TeleError, type Origin, type TeleRequests } from './tele-requests.ts';
import { appendEvent } from '../events/outbox.ts';

export const agreements = ['agree', 'partial', 'disagree'] as const;
export type Agreement = (typeof agreements)[number];

export interface SecondReading {
  id: number;
  requestId: number;
  specialty: string;
  question: string;
  askedBy: string;
  expert: string;
  status: 'requested' | 'answered';
  findings?: string;
  conclusion?: string;
  agreement?: Agreement;
  createdAt: string;
  answeredAt?: string;
}

interface Row {
  id: number; request_id: number; specialty: string; question: string; asked_by: string; expert_login: string; expert_user_id: number;
  grant_id: number | null; status: 'requested' | 'answered'; findings: string | null; conclusion: string | null; agreement: Agreement | null;
  created_at: string; answered_at: string | null;
}

function secondReadingOf(r: Row): SecondReading {
  return {
    id: Number(r.id), requestId: Number(r.request_id), specialty: r.specialty, question: r.question, askedBy: r.asked_by, expert: r.expert_login,
    status: r.status, createdAt: r.created_at,
    ...(r.findings !== null ? { findings: r.findings } : {}), ...(r.conclusion !== null ? { conclusion: r.conclusion } : {}),
    ...(r.agreement !== null ? { agreement: r.agreement } : {}), ...(r.answered_at !== null ? { answeredAt: r.answered_at } : {}),
  };
}

const select = 'SELECT s.*, u.login AS expert_login FROM tele_second_readings s JOIN users u ON u.id = s.expert_user_id';

export class SecondReadings {
  constructor(private readonly requests: TeleRequests) {}

  private get sql(): SqlDatabase {
    return this.requests.sql;
  }

  private async row(tx: SqlDatabase, id: number): Promise<Row> {
    const row = await tx.get<Row>(`${select} WHERE s.id = ?`, [id]);
    if (!row) throw new TeleError('not-found', `second reading ${id} does not exist`);
    return row;
  }

  /**
   * Asks for an expert opinion on a reported exam: by whoever may see its request (its site,
   * its reader, the territory). The expert is named, or the one on call for the specialty.
   */
  async askSecondReading(who: Principal, requestId: number, ask: { specialty: string; question: string; expert?: string }, origin: Origin, now = new Date()): Promise<SecondReading> {
    const question = ask.question.trim();
    const specialty = ask.specialty.trim();
    if (question === '' || specialty === '') throw new TeleError('incomplete', 'a second reading needs the specialty and the question', [...(specialty === '' ? ['specialty'] : []), ...(question === '' ? ['question'] : [])]);
    await this.requests.requestFor(who, requestId, origin, now);
    const named = ask.expert !== undefined ? await this.requests.radiologistByLogin(ask.expert) : undefined;
    return this.sql.transaction(async (tx) => {
      const request = await this.requests.row(tx, requestId);
      if (request.status !== 'reported') throw new TeleError('conflict', `request ${requestId} has no final report yet: a second reading follows a first one`);
      const expert = named ?? await this.requests.onCallFor(tx, specialty, now);
      if (expert === undefined) throw new TeleError('conflict', `no ${specialty} expert is on call: name one`);
      if (expert === who.userId || expert === Number(request.assigned_user_id)) throw new TeleError('invalid', 'a second reading is asked of another radiologist than the first reader');
      const grant = await this.requests.grants.grant({ kind: 'assignment', userId: expert, StudyInstanceUID: request.study_instance_uid!, grantedBy: who.id, reason: `second reading of teleradiology request ${requestId}` }, tx);
      const inserted = await tx.get<{ id: number }>(
        `INSERT INTO tele_second_readings (request_id, specialty, question, asked_by, asked_by_user_id, expert_user_id, grant_id, status, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, 'requested', ?) RETURNING id`,
        [requestId, specialty, question, who.id, who.userId ?? null, expert, grant.id, now.toISOString()]);
      const row = await this.row(tx, Number(inserted!.id));
      await this.requests.record(tx, who, origin, 'second-reading', request, { secondReading: Number(row.id), specialty, expert: row.expert_login });
      return secondReadingOf(row);
    });
  }

  /** The expert's answer: their findings, conclusion and agreement with the first report. Once. */
  async answerSecondReading(who: Principal, id: number, answer: { findings?: string; conclusion: string; agreement: Agreement }, origin: Origin, now = new Date()): Promise<SecondReading> {
    const userId = requireRadiologist(who);
    if (answer.conclusion.trim() === '') throw new TeleError('incomplete', 'an expert opinion has a conclusion', ['conclusion']);
    return this.sql.transaction(async (tx) => {
      const row = await this.row(tx, id);
      if (Number(row.expert_user_id) !== userId) throw new TeleError('forbidden', `second reading ${id} was asked of another expert`);
      const done = await tx.run(
        `UPDATE tele_second_readings SET status = 'answered', findings = ?, conclusion = ?, agreement = ?, answer_site_id = ?, answered_at = ?
          WHERE id = ? AND status = 'requested'`,
        [answer.findings?.trim() ?? '', answer.conclusion.trim(), answer.agreement, who.sites[0]?.id ?? null, now.toISOString(), id]);
      if (done.changes !== 1) throw new TeleError('conflict', `second reading ${id} is already answered`);
      if (row.grant_id !== null) await tx.run('UPDATE access_grants SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL', [now.toISOString(), who.id, row.grant_id]);
      const request = await this.requests.row(tx, Number(row.request_id));
      await this.requests.record(tx, who, origin, 'second-reading', request, { secondReading: id, answered: true, agreement: answer.agreement });
      // A second reading, for metering (src/billing/metering.ts): billed to the requesting site.
      await appendEvent(tx, 'tele.second-reading-answered', { secondReading: id, requestId: Number(row.request_id), siteId: Number(request.requesting_site_id), StudyInstanceUID: request.study_instance_uid }, now.toISOString());
      return secondReadingOf(await this.row(tx, id));
    });
  }

  /** One second reading, for its expert and whoever may see its request. */
  async secondReadingFor(who: Principal, id: number, origin: Origin): Promise<SecondReading> {
    const row = await this.row(this.sql, id);
    if (Number(row.expert_user_id) !== who.userId) {
      try {
        await this.requests.requestFor(who, Number(row.request_id), origin);
      } catch (e) {
        // Answered as a second reading that does not exist: naming its request would tell it does.
        if (e instanceof TeleError && e.code === 'not-found') throw new TeleError('not-found', `second reading ${id} does not exist`);
        throw e;
      }
    }
    return secondReadingOf(row);
  }

  /** The second readings asked of the calling expert, the open ones first, oldest first. */
  async askedOf(who: Principal): Promise<SecondReading[]> {
    const userId = requireRadiologist(who);
    const rows = await this.sql.all<Row>(`${select} WHERE s.expert_user_id = ? ORDER BY CASE WHEN s.status = 'requested' THEN 0 ELSE 1 END, s.created_at, s.id LIMIT 500`, [userId]);
    return rows.map(secondReadingOf);
  }
}
