import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatMediaType, MediaTypeError, parseAccept, parseAcceptPreferences, parseMediaType } from './media-type.ts';

describe('parseMediaType', () => {
  it('reads a STOW-RS content type with a quoted type and a bare boundary', () => {
    assert.deepEqual(parseMediaType('multipart/related; type="application/dicom"; boundary=abc-123'), {
      type: 'multipart/related',
      params: { type: 'application/dicom', boundary: 'abc-123' },
    });
  });

  it('lower-cases the type and parameter names but keeps the case of values', () => {
    assert.deepEqual(parseMediaType('Multipart/Related; BOUNDARY=AbC; Type=Application/DICOM'), {
      type: 'multipart/related',
      params: { boundary: 'AbC', type: 'Application/DICOM' },
    });
  });

  it('unquotes a quoted boundary holding characters that are not token characters', () => {
    const mt = parseMediaType('multipart/related; boundary="gc0p4Jq0M2Yt08j34c0p: =?,x"; type="application/dicom"');
    assert.equal(mt.params.boundary, 'gc0p4Jq0M2Yt08j34c0p: =?,x');
  });

  it('unescapes backslash escapes in quoted strings', () => {
    assert.equal(parseMediaType('text/plain; title="a \\"b\\" \\\\ c"').params.title, 'a "b" \\ c');
  });

  it('accepts an unquoted type=application/dicom as clients send it, and spaces around "=" and ";"', () => {
    assert.deepEqual(parseMediaType('  multipart/related ;type = application/dicom;  boundary=b1 ').params, { type: 'application/dicom', boundary: 'b1' });
  });

  it('tolerates empty parameters and a trailing semicolon', () => {
    assert.deepEqual(parseMediaType('application/dicom;;transfer-syntax=1.2.840.10008.1.2.1;'), {
      type: 'application/dicom',
      params: { 'transfer-syntax': '1.2.840.10008.1.2.1' },
    });
  });

  it('parses a type without parameters', () => {
    assert.deepEqual(parseMediaType('application/dicom+json'), { type: 'application/dicom+json', params: {} });
  });

  const malformed: Array<[string, RegExp]> = [
    ['', /missing type/],
    ['multipart', /missing "\/subtype"/],
    ['multipart/', /missing subtype/],
    ['multipart related', /expected "\/"/],
    ['multipart/related; boundary', /boundary has no "="/],
    ['multipart/related; boundary=', /boundary has no value/],
    ['multipart/related; boundary="abc', /unterminated quoted string/],
    ['multipart/related; boundary="abc\\', /unterminated quoted string/],
    ['multipart/related; boundary=a; boundary=b', /boundary given twice/],
    ['multipart/related; boundary="a" junk', /unexpected "j"/],
    ['multipart/related; boundary=a"b', /unexpected "\\""/],
    ['*/json', /not a media range/],
  ];
  for (const [header, message] of malformed) {
    it(`throws a MediaTypeError on ${JSON.stringify(header)}`, () => {
      assert.throws(() => parseMediaType(header), (e: unknown) => {
        assert.ok(e instanceof MediaTypeError);
        assert.match(e.message, message);
        assert.match(e.message, /malformed media type/);
        return true;
      });
    });
  }
});

describe('formatMediaType', () => {
  it('quotes values that are not tokens and leaves tokens bare', () => {
    assert.equal(
      formatMediaType({ type: 'multipart/related', params: { type: 'application/dicom', boundary: 'abc', 'transfer-syntax': '1.2.840.10008.1.2.1' } }),
      'multipart/related; type="application/dicom"; boundary=abc; transfer-syntax=1.2.840.10008.1.2.1',
    );
  });

  it('escapes quotes and backslashes, and round-trips through parseMediaType', () => {
    const mt = { type: 'text/plain', params: { title: 'say "hi" \\ bye', empty: '' } };
    const header = formatMediaType(mt);
    assert.equal(header, 'text/plain; title="say \\"hi\\" \\\\ bye"; empty=""');
    assert.deepEqual(parseMediaType(header), mt);
  });

  it('refuses control characters that would split the header', () => {
    assert.throws(() => formatMediaType({ type: 'a/b', params: { x: 'a\r\nSet-Cookie: y' } }), MediaTypeError);
    assert.throws(() => formatMediaType({ type: 'a b/c', params: {} }), MediaTypeError);
  });
});

describe('parseAccept', () => {
  it('gives [] for an absent or empty header', () => {
    assert.deepEqual(parseAccept(undefined), []);
    assert.deepEqual(parseAccept(''), []);
    assert.deepEqual(parseAccept(' , '), []);
  });

  it("reads dicomweb-client's header for bulk data and frames", () => {
    assert.deepEqual(parseAccept('multipart/related; type="application/octet-stream"; transfer-syntax=*'), [
      { type: 'multipart/related', params: { type: 'application/octet-stream', 'transfer-syntax': '*' }, q: 1 },
    ]);
  });

  it('reads a WADO-RS instance request with an explicit transfer syntax', () => {
    assert.deepEqual(parseAccept('multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'), [
      { type: 'multipart/related', params: { type: 'application/dicom', 'transfer-syntax': '1.2.840.10008.1.2.1' }, q: 1 },
    ]);
  });

  it('keeps commas inside quoted strings within one range', () => {
    const ranges = parseAccept('multipart/related; type="application/dicom"; x="a, b", application/dicom+json');
    assert.equal(ranges.length, 2);
    assert.deepEqual(ranges[0]!.params, { type: 'application/dicom', x: 'a, b' });
    assert.equal(ranges[1]!.type, 'application/dicom+json');
  });

  it('orders by q, then specificity, then the order given', () => {
    const ranges = parseAccept('*/*;q=0.1, image/*;q=0.8, application/dicom+json, image/jpeg;q=0.8, image/png;q=0.8;x=1, application/json');
    assert.deepEqual(ranges.map((r) => [r.type, r.q]), [
      ['application/dicom+json', 1],
      ['application/json', 1],
      ['image/png', 0.8],
      ['image/jpeg', 0.8],
      ['image/*', 0.8],
      ['*/*', 0.1],
    ]);
  });

  it('gives DICOMweb preferences by q, then concrete types before wildcards, then the order given, not by parameter count', () => {
    const ranges = parseAcceptPreferences('*/*, multipart/related; type="application/dicom", multipart/related; type="application/dicom"; transfer-syntax=*, image/*;q=0.9, image/png;q=0.5');
    assert.deepEqual(ranges.map((r) => [r.type, r.params['transfer-syntax'] ?? '', r.q]), [
      ['multipart/related', '', 1],
      ['multipart/related', '*', 1],
      ['*/*', '', 1],
      ['image/*', '', 0.9],
      ['image/png', '', 0.5],
    ]);
  });

  it('keeps q=0 ranges last, and does not leave q among the parameters', () => {
    const ranges = parseAccept('application/dicom;q=0, multipart/related; type="application/dicom"; q=0.5');
    assert.deepEqual(ranges, [
      { type: 'multipart/related', params: { type: 'application/dicom' }, q: 0.5 },
      { type: 'application/dicom', params: {}, q: 0 },
    ]);
  });

  it("reads a browser's header and Java's bare \"*\"", () => {
    const browser = parseAccept('text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8');
    assert.deepEqual(browser.map((r) => r.type), ['text/html', 'application/xhtml+xml', 'image/avif', 'image/webp', 'application/xml', '*/*']);
    const java = parseAccept('text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2');
    assert.deepEqual(java.map((r) => [r.type, r.q]), [['text/html', 1], ['image/gif', 1], ['image/jpeg', 1], ['*/*', 0.2], ['*/*', 0.2]]);
  });

  it('prefers image/png (q=1) to image/jpeg;q=0.5 whatever their order', () => {
    assert.deepEqual(parseAccept('image/jpeg;q=0.5, image/png'), [
      { type: 'image/png', params: {}, q: 1 },
      { type: 'image/jpeg', params: {}, q: 0.5 },
    ]);
  });

  it('reads */* and application/dicom+json alone', () => {
    assert.deepEqual(parseAccept('*/*'), [{ type: '*/*', params: {}, q: 1 }]);
    assert.deepEqual(parseAccept('application/dicom+json'), [{ type: 'application/dicom+json', params: {}, q: 1 }]);
  });

  const malformedRanges: Array<[string, RegExp]> = [
    ['application/dicom;q=2', /q=2 is not a quality value/],
    ['application/dicom;q=abc, image/jpeg', /q=abc is not a quality value/],
    ['image/jpeg, garbage', /missing "\/subtype"/],
    ['text/plain; a="x, y', /unterminated quoted string/],
    ['multipart/related; type="a,b" junk, application/dicom+json', /unexpected "j"/],
    ['*/jpeg', /not a media range/],
    ['image/jpeg;q', /q has no "="/],
  ];
  for (const [header, message] of malformedRanges) {
    it(`throws a MediaTypeError on the Accept header ${JSON.stringify(header)}`, () => {
      assert.throws(() => parseAccept(header), (e: unknown) => {
        assert.ok(e instanceof MediaTypeError);
        assert.match(e.message, /^malformed Accept header /);
        assert.match(e.message, message);
        return true;
      });
    });
  }

  it('understands the dicomweb-client default for metadata and lower-cases types', () => {
    assert.deepEqual(parseAccept('Application/DICOM+JSON; q=1.000'), [{ type: 'application/dicom+json', params: {}, q: 1 }]);
  });
});
