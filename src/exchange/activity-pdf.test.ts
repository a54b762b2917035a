import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { renderActivityPdf } from './activity-pdf.ts';
import type { ActivityRow } from '../workflow/tele-activity.ts';

const pages = (pdf: Buffer) => (pdf.toString('latin1').match(/\/Type \/Page\b/g) ?? []).length;

describe('the annual activity PDF', () => {
  it('is a PDF of one page for a year without acts', async () => {
    const pdf = await renderActivityPdf({ year: 2026, rows: [], scope: 'Tout le territoire', generatedAt: new Date('2026-12-31T12:00:00Z') });
    assert.equal(pdf.subarray(0, 5).toString('latin1'), '%PDF-');
    assert.equal(pages(pdf), 1);
  });

  it('goes on to further pages when the table by site and urgency is long', async () => {
    const rows: ActivityRow[] = Array.from({ length: 120 }, (_, i) => ({
      period: `2026-${String((i % 12) + 1).padStart(2, '0')}`, act: i % 2 ? 'second-reading' : 'primary-reading', specialty: `spécialité ${i % 5}`,
      requestingSite: `SITE-${String(i).padStart(3, '0')}`, readingSite: 'CHU-NORD', urgency: 'routine', count: i + 1, medianMinutes: 30, p90Minutes: 60,
    }));
    const pdf = await renderActivityPdf({ year: 2026, rows, scope: 'Tout le territoire', generatedAt: new Date('2026-12-31T12:00:00Z') });
    assert.ok(pages(pdf) >= 2, `${pages(pdf)} page(s)`);
  });
});
