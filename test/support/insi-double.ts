/**
 * A test double of the CNAM's INSi teleservice (rechercherInsAvecTraitsIdentite), on loopback,
 * HTTPS with the client certificate required (the site's organisation certificate). It checks
 * what the service checks of a call (SOAP 1.2 content type and action, WS-Addressing Action,
 * the RECSANSVITALE traits: birth name, first name, sex M/F, birth date YYYY-MM-DD) and answers
 * like the CNAM's test base, from the traits asked:
 * - a person of `identities` (same birth name, first name, sex, birth date): CodeCR 00 with
 *   the INS (NumIdentifiant, Cle, OID) and the reference traits (TIQ);
 * - a birth name of `homonyms`: CodeCR 02, several identities;
 * - a birth name of `malformed`: an answer that is no INSi answer (a truncated envelope);
 * - a birth name of `failing`: a SOAP 1.2 fault (Receiver), the service unable to answer;
 * - anyone else: CodeCR 01, no identity.
 * A call that breaks the rules is a SOAP 1.2 fault (Sender), as the service answers.
 */
import https from 'node:https';
import type { TLSSocket } from 'node:tls';

export interface InsiDoubleIdentity {
  matricule: string; key: string; oid: string;
  birthName: string; firstNames: string[]; sex: 'M' | 'F'; birthDate: string; birthPlace?: string;
}

export interface InsiCall { birthName: string; firstName: string; sex: string; birthDate: string; birthPlace?: string; clientCertificate: string }

const soapNs = 'http://www.w3.org/2003/05/soap-envelope';
const action = 'urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite';

export class InsiDouble {
  readonly calls: InsiCall[] = [];
  readonly identities: InsiDoubleIdentity[] = [];
  readonly homonyms = new Set<string>();
  readonly malformed = new Set<string>();
  readonly failing = new Set<string>();
  private server: https.Server | undefined;

  constructor(private readonly tls: { cert: Buffer; key: Buffer; ca: Buffer }) {}

  async listen(): Promise<string> {
    this.server = https.createServer({ ...this.tls, requestCert: true, rejectUnauthorized: true }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const { status, body } = this.answer(req.headers['content-type'] ?? '', Buffer.concat(chunks).toString('utf8'), certificateName(req.socket as TLSSocket));
        res.writeHead(status, { 'content-type': 'application/soap+xml; charset=utf-8' });
        res.end(body);
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return `https://127.0.0.1:${(this.server.address() as { port: number }).port}/insi`;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server?.closeAllConnections();
      this.server ? this.server.close(() => resolve()) : resolve();
    });
  }

  private answer(contentType: string, body: string, clientCertificate: string): { status: number; body: string } {
    if (!contentType.startsWith('application/soap+xml') || !contentType.includes(`action="${action}"`)) return fault('the call is not SOAP 1.2 with the action rechercherInsAvecTraitsIdentite');
    if (!body.includes(`<wsa:Action>${action}</wsa:Action>`)) return fault('WS-Addressing Action missing');
    const value = (name: string) => new RegExp(`<rec:${name}>([^<]*)</rec:${name}>`).exec(body)?.[1]?.replace(/&apos;/g, '\'').replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
    const call = { birthName: value('NomNaissance') ?? '', firstName: value('Prenom') ?? '', sex: value('Sexe') ?? '', birthDate: value('DateNaissance') ?? '', clientCertificate, ...(value('LieuNaissance') ? { birthPlace: value('LieuNaissance')! } : {}) };
    if (call.birthName === '' || call.firstName === '' || !['M', 'F'].includes(call.sex) || !/^\d{4}-\d{2}-\d{2}$/.test(call.birthDate)) return fault('RECSANSVITALE: NomNaissance, Prenom, Sexe (M, F) and DateNaissance (AAAA-MM-JJ) are required');
    this.calls.push(call);
    if (this.malformed.has(call.birthName)) return { status: 200, body: `<soap:Envelope xmlns:soap="${soapNs}"><soap:Body><ns:Resultat xmlns:ns="http://www.cnamts.fr/INSiResultat"><ns:CR><ns:Code` };
    if (this.failing.has(call.birthName)) return fault('service momentanément indisponible', 'Receiver', 500);
    if (this.homonyms.has(call.birthName)) return result('02', 'Plusieurs identités trouvées');
    const found = this.identities.find((p) => p.birthName === call.birthName && p.firstNames[0] === call.firstName && p.sex === call.sex
      && `${p.birthDate.slice(0, 4)}-${p.birthDate.slice(4, 6)}-${p.birthDate.slice(6, 8)}` === call.birthDate);
    if (!found) return result('01', 'Aucune identité trouvée');
    const d = found.birthDate;
    return result('00', 'OK', `<ns:INDIVIDU><ns:INSACTIF><ns:IdIndividu><ns:NumIdentifiant>${found.matricule}</ns:NumIdentifiant><ns:Cle>${found.key}</ns:Cle></ns:IdIndividu><ns:OID>${found.oid}</ns:OID></ns:INSACTIF>`
      + `<ns:TIQ><ns:NomNaissance>${found.birthName}</ns:NomNaissance><ns:Prenom>${found.firstNames[0]}</ns:Prenom><ns:ListePrenom>${found.firstNames.join(' ')}</ns:ListePrenom>`
      + `<ns:Sexe>${found.sex}</ns:Sexe><ns:DateNaissance>${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6, 8)}</ns:DateNaissance>${found.birthPlace ? `<ns:LieuNaissance>${found.birthPlace}</ns:LieuNaissance>` : ''}</ns:TIQ></ns:INDIVIDU>`);
  }
}

/** The CN of the client certificate (a CN may repeat: the first). */
function certificateName(socket: TLSSocket): string {
  const cn = socket.getPeerCertificate().subject?.CN;
  return (Array.isArray(cn) ? cn[0] : cn) ?? '';
}

function result(code: string, label: string, individu = ''): { status: number; body: string } {
  return { status: 200, body: `<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="${soapNs}"><soap:Header/><soap:Body><ns:Resultat xmlns:ns="http://www.cnamts.fr/INSiResultat"><ns:CR><ns:CodeCR>${code}</ns:CodeCR><ns:LibelleCR>${label}</ns:LibelleCR></ns:CR>${individu}</ns:Resultat></soap:Body></soap:Envelope>` };
}

function fault(reason: string, code: 'Sender' | 'Receiver' = 'Sender', status = 400): { status: number; body: string } {
  return { status, body: `<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="${soapNs}"><soap:Body><soap:Fault><soap:Code><soap:Value>soap:${code}</soap:Value></soap:Code><soap:Reason><soap:Text xml:lang="fr">${reason}</soap:Text></soap:Reason></soap:Fault></soap:Body></soap:Envelope>` };
}
