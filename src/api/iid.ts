/**
 * IHE Invoke Image Display (IID, ITI TF-1 §32), the study request: the link a report or a
 * record carries opens the study in Atrium's viewer. GET /IHEInvokeImageDisplay?requestType=STUDY&studyUID=…
 *
 * The route is public to the authentication hook only so that a browser without a session
 * is sent to log in (Pro Santé Connect) and brought back here, rather than shown a 401; the
 * session is then checked here, and the study by the one access policy: a study the caller
 * may not see is answered as if absent, and recorded, exactly as DICOMweb answers it.
 */
import type { FastifyInstance } from 'fastify';
import type { Archive } from '../archive/archive.ts';
import { AuditTrail, patientRefOf } from '../access/audit.ts';
import type { Authenticator } from '../access/login.ts';
import { AccessPolicy, reasonToSee } from '../access/policy.ts';
import { actorOf } from '../access/principal.ts';
import { AuthenticationError } from '../access/users.ts';
import { HttpProblem, problemErrorHandler } from '../dicomweb/problem.ts';
import { cookieOf, sessionCookieName } from './auth.ts';

export const iidPath = '/IHEInvokeImageDisplay';

const uidPattern = /^[0-9]+(\.[0-9]+)*$/;

export async function iidRoutes(app: FastifyInstance, options: { archive: Archive; authenticator: Authenticator }): Promise<void> {
  const { archive, authenticator } = options;
  const audit = new AuditTrail(archive.index.sql);
  const policy = new AccessPolicy(archive.index.sql);
  app.setErrorHandler(problemErrorHandler('image display'));

  app.get<{ Querystring: Record<string, string | undefined> }>(iidPath, async (request, reply) => {
    const { requestType, studyUID } = request.query;
    if (requestType !== 'STUDY') throw new HttpProblem(400, 'requestType must be STUDY (the patient request is not offered)');
    // IID allows several studies; the viewer opens one, so one is asked for.
    if (typeof studyUID !== 'string' || studyUID.length > 64 || !uidPattern.test(studyUID)) throw new HttpProblem(400, 'studyUID must be one Study Instance UID');
    const cookie = cookieOf(request.headers.cookie, sessionCookieName);
    let principal;
    try {
      principal = cookie === undefined ? undefined : (await authenticator.principalOfSession(cookie, { source: request.ip, via: 'portal' })).principal;
    } catch (e) {
      if (!(e instanceof AuthenticationError)) throw e;
    }
    if (!principal) {
      // Back here once logged in: the decision is made with the session.
      const back = `${iidPath}?requestType=STUDY&studyUID=${encodeURIComponent(studyUID)}`;
      if (authenticator.oidcEnabled) return reply.redirect(`/auth/login?returnTo=${encodeURIComponent(back)}`, 302);
      throw new HttpProblem(401, 'log in to the portal first');
    }
    const study = await archive.index.studyPatient(studyUID);
    const access = study ? reasonToSee(await policy.scopeOf(principal), study) : undefined;
    await audit.record({
      action: 'view', outcome: access ? 'success' : 'refused', ...actorOf(principal), source: request.ip, via: 'portal', StudyInstanceUID: studyUID,
      ...(study ? { patients: [patientRefOf(archive.siteById, study)] } : {}),
      details: { route: iidPath, requestType, ...(access ? { access } : {}) },
    });
    if (!access) throw new HttpProblem(404, `study ${studyUID} is not in the archive`);
    return reply.redirect(`/app/viewer?StudyInstanceUID=${encodeURIComponent(studyUID)}`, 302);
  });
}
