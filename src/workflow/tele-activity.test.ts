import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { activityCsv, percentile } from './tele-activity.ts';

describe('teleradiology activity', () => {
  it('takes the median as the middle value (the mean of the two middle ones for an even count) and p90 by nearest rank', () => {
    assert.equal(percentile([], 0.5), 0);
    assert.equal(percentile([7], 0.9), 7);
    assert.equal(percentile([1, 2, 3], 0.5), 2);
    assert.equal(percentile([1, 2, 3, 10], 0.5), 2.5);
    assert.equal(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9), 9);
    assert.equal(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 0.9), 10);
  });

  it('writes RFC 4180 CSV, quoting cells with commas or quotes', () => {
    const csv = activityCsv([{ period: '2026-11', act: 'primary-reading', specialty: 'neuro, vasculaire', requestingSite: 'A"B', readingSite: 'C', urgency: 'stroke', count: 3, medianMinutes: 12.5, p90Minutes: 20 }]);
    assert.equal(csv, 'period,act,specialty,requestingSite,readingSite,urgency,count,medianMinutes,p90Minutes\r\n2026-11,primary-reading,"neuro, vasculaire","A""B",C,stroke,3,12.5,20\r\n');
  });
});
