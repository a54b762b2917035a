import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  INSError, INS_OIDS, identityStatusOf, insKeyOf, insValue, isINSEEBirthPlaceCode, isValidBirthDate, isValidINSKey,
  parseINS, sameINS, shareableINS, type IdentityStatus, type INSErrorCode, type PatientIdentity, type ReferenceTraits,
} from './ins.ts';

// Keys computed outside this code (Python: 97 - int(matricule) % 97, 2A → 19, 2B → 18).
const NIR = '184127645108946'; // 1 84 12 76 451 089, key 46
const NIR_FEMALE = '269059935012384'; // born abroad (99), country 350
const NIR_2A = '282032A12345601'; // Corsica-du-Sud, key 01 (it would be 71 with "20" there)
const NIR_2B = '175012B03307080'; // Haute-Corse, key 80
const NIA = '785119912345694'; // sex digit 7 (temporary number), born abroad (99), key 94
const KEY_97 = '184127645103897'; // matricule divisible by 97: the key is 97, not 00

function throwsINS(fn: () => unknown, code: INSErrorCode, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof INSError, `expected an INSError, got ${String(e)}`);
    assert.equal(e.code, code);
    if (message) assert.match(e.message, message);
    return true;
  });
}

describe('INS key', () => {
  it('is 97 minus the matricule modulo 97, on two digits', () => {
    assert.equal(insKeyOf('1841276451089'), '46');
    assert.equal(insKeyOf('1841276451038'), '97');
    assert.equal(insKeyOf('1000101001001'), '05');
  });

  it('counts 2A as 19 and 2B as 18 for births in Corsica', () => {
    assert.equal(insKeyOf('282032A123456'), '01');
    assert.equal(insKeyOf('175012B033070'), '80');
    assert.equal(isValidINSKey('282032A123456', '71'), false, '2A read as 20 gives 71: the wrong key');
  });

  it('isValidINSKey answers false, never throws, for malformed input', () => {
    assert.equal(isValidINSKey('1841276451089', '46'), true);
    assert.equal(isValidINSKey('1841276451089', '47'), false);
    assert.equal(isValidINSKey('1841276451089', '4'), false);
    assert.equal(isValidINSKey('18412764510', '46'), false);
    assert.equal(isValidINSKey('18412764510X9', '46'), false);
  });
});

describe('parseINS', () => {
  it('reads a production NIR', () => {
    const ins = parseINS(NIR, INS_OIDS.NIR);
    assert.deepEqual({ ...ins }, { matricule: '1841276451089', key: '46', system: 'NIR', test: false, oid: INS_OIDS.NIR });
    assert.equal(insValue(ins), NIR);
    assert.ok(Object.isFrozen(ins));
  });

  it('reads NIRs of women, of people born abroad, with key 97', () => {
    assert.equal(parseINS(NIR_FEMALE, INS_OIDS.NIR).matricule, '2690599350123');
    assert.equal(parseINS(KEY_97, INS_OIDS.NIR).key, '97');
  });

  it('reads NIRs of births in Corsica (2A and 2B), upper or lower case', () => {
    assert.equal(parseINS(NIR_2A, INS_OIDS.NIR).matricule, '282032A123456');
    assert.equal(parseINS(NIR_2B, INS_OIDS.NIR).matricule, '175012B033070');
    assert.equal(parseINS(NIR_2B.toLowerCase(), INS_OIDS.NIR).matricule, '175012B033070');
  });

  it('reads a NIA, whose system is said by its OID', () => {
    const ins = parseINS(NIA, INS_OIDS.NIA);
    assert.equal(ins.system, 'NIA');
    assert.equal(ins.test, false);
  });

  it('flags identities of the test and demonstration OIDs as test NIRs', () => {
    const test = parseINS(NIR, '1.2.250.1.213.1.4.10');
    const demo = parseINS(NIR, '1.2.250.1.213.1.4.11');
    assert.deepEqual([test.system, test.test], ['NIR', true]);
    assert.deepEqual([demo.system, demo.test], ['NIR', true]);
    assert.equal(sameINS(test, parseINS(NIR, INS_OIDS.NIR)), false, 'a test identity is never the real one');
  });

  it('accepts the printed form with spaces', () => {
    assert.equal(insValue(parseINS('1 84 12 76 451 089 46', INS_OIDS.NIR)), NIR);
  });

  it('refuses an OID that is not an INS authority, such as the retired INS-C', () => {
    throwsINS(() => parseINS(NIR, '1.2.250.1.213.1.4.2'), 'unknown-oid', /1\.2\.250\.1\.213\.1\.4\.2 is not the OID of an INS authority/);
    throwsINS(() => parseINS(NIR, ''), 'unknown-oid');
  });

  it('refuses a wrong key without revealing the right one', () => {
    throwsINS(() => parseINS('184127645108947', INS_OIDS.NIR), 'bad-key', /key does not match/);
    throwsINS(() => parseINS('282032A12345671', INS_OIDS.NIR), 'bad-key');
    assert.throws(() => parseINS('184127645108947', INS_OIDS.NIR), (e: Error) => !e.message.includes('46'));
  });

  it('refuses wrong lengths', () => {
    throwsINS(() => parseINS('1841276451089', INS_OIDS.NIR), 'bad-structure', /15 characters .* not 13/);
    throwsINS(() => parseINS('1841276451089460', INS_OIDS.NIR), 'bad-structure', /not 16/);
    throwsINS(() => parseINS('', INS_OIDS.NIR), 'bad-structure');
  });

  it('refuses letters other than 2A/2B at positions 6-7, and other characters', () => {
    throwsINS(() => parseINS('18412764510894X', INS_OIDS.NIR), 'bad-structure', /key .* 2 digits/);
    throwsINS(() => parseINS('1841276A5108946', INS_OIDS.NIR), 'bad-structure', /2A or 2B at positions 6-7 only/);
    throwsINS(() => parseINS('184122C45108946', INS_OIDS.NIR), 'bad-structure');
    throwsINS(() => parseINS('1841276-5108946', INS_OIDS.NIR), 'bad-structure');
  });

  it('refuses impossible sex digits, months, département 00 and order 000', () => {
    const withKey = (m: string) => m + insKeyOf(m);
    throwsINS(() => parseINS(withKey('5841276451089'), INS_OIDS.NIR), 'bad-structure', /sex digit 5/);
    throwsINS(() => parseINS(withKey('0841276451089'), INS_OIDS.NIR), 'bad-structure', /sex digit 0/);
    throwsINS(() => parseINS(withKey('1841376451089'), INS_OIDS.NIR), 'bad-structure', /month 13/);
    throwsINS(() => parseINS(withKey('1840076451089'), INS_OIDS.NIR), 'bad-structure', /month 00/);
    throwsINS(() => parseINS(withKey('1844576451089'), INS_OIDS.NIR), 'bad-structure', /month 45/);
    throwsINS(() => parseINS(withKey('1841200451089'), INS_OIDS.NIR), 'bad-structure', /département 00/);
    throwsINS(() => parseINS(withKey('1841276451000'), INS_OIDS.NIR), 'bad-structure', /order number 000/);
  });

  it("accepts INSEE's codes for an unknown month and the other sex digits", () => {
    for (const m of ['1842076451089', '1843376451089', '1845276451089', '3841276451089', '4841276451089', '8841276451089']) {
      assert.equal(parseINS(m + insKeyOf(m), INS_OIDS.NIR).matricule, m);
    }
  });
});

describe('identity status', () => {
  it('is qualified only when recovered by INSi and validated by a document', () => {
    assert.equal(identityStatusOf({ recoveredByINSi: true, validatedByDocument: true }), 'qualified');
    assert.equal(identityStatusOf({ recoveredByINSi: true, validatedByDocument: false }), 'recovered');
    assert.equal(identityStatusOf({ recoveredByINSi: false, validatedByDocument: true }), 'validated');
    assert.equal(identityStatusOf({ recoveredByINSi: false, validatedByDocument: false }), 'provisional');
  });
});

describe('shareableINS', () => {
  const traits: ReferenceTraits = {
    birthName: 'MARTIN', firstNames: ['JEANNE', 'MARIE'], sex: 'F', birthDate: { year: 1969, month: 5, day: 12 }, birthPlaceCode: '99350',
  };
  const ins = parseINS(NIR_FEMALE, INS_OIDS.NIR);
  const identity = (status: IdentityStatus): PatientIdentity => ({ ins, status, traits });

  it('gives the INS of a qualified identity', () => {
    assert.equal(shareableINS(identity('qualified')), ins);
  });

  it('withholds the INS of provisional, recovered and validated identities', () => {
    for (const status of ['provisional', 'recovered', 'validated'] as const) {
      assert.equal(shareableINS(identity(status)), undefined, status);
    }
  });

  it('gives nothing for a qualified identity without an INS', () => {
    assert.equal(shareableINS({ status: 'qualified', traits }), undefined);
  });
});

describe('reference traits', () => {
  it('checks INSEE birth place codes: communes, Corsica, overseas, abroad', () => {
    for (const c of ['76451', '2A004', '2B033', '97411', '99350']) assert.equal(isINSEEBirthPlaceCode(c), true, c);
    for (const c of ['7645', '764512', '2C004', '00123', 'ABCDE']) assert.equal(isINSEEBirthPlaceCode(c), false, c);
  });

  it('takes birth dates with an unknown day or month, but no day without a month', () => {
    assert.equal(isValidBirthDate({ year: 1984, month: 12, day: 31 }), true);
    assert.equal(isValidBirthDate({ year: 1984, month: 12 }), true);
    assert.equal(isValidBirthDate({ year: 1984 }), true);
    assert.equal(isValidBirthDate({ year: 1984, day: 3 }), false);
    assert.equal(isValidBirthDate({ year: 1983, month: 2, day: 29 }), false);
    assert.equal(isValidBirthDate({ year: 1984, month: 2, day: 29 }), true);
    assert.equal(isValidBirthDate({ year: 1984, month: 13 }), false);
  });
});
