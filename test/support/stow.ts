/** STOW-RS by hand (a multipart/related body of application/dicom parts), for tests that store their objects. */

export function stowBody(files: Buffer[], boundary = 'atrium-test-stow'): { body: Buffer; contentType: string } {
  const body = Buffer.concat([
    ...files.flatMap((f) => [Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`), f, Buffer.from('\r\n')]),
    Buffer.from(`--${boundary}--\r\n`),
  ]);
  return { body, contentType: `multipart/related; type="application/dicom"; boundary=${boundary}` };
}

/** POSTs the objects to `${dicomweb}/studies` with a bearer token; the caller checks the answer. */
export function stowFiles(dicomweb: string, token: string, files: Buffer[]): Promise<Response> {
  const { body, contentType } = stowBody(files);
  return fetch(`${dicomweb}/studies`, { method: 'POST', body: new Uint8Array(body), headers: { authorization: `Bearer ${token}`, 'content-type': contentType } });
}
