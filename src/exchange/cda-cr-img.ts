/**
 * The imaging report as a CDA R2 document of the CI-SIS volet "Compte rendu d'imagerie
 * médicale" (IMG-CR-IMG 2024.01): LOINC 18748-4, the DICOM PS3.20 header and sections, the
 * patient named by their qualified INS, the signing radiologist (RPPS) as author and legal
 * authenticator, the requesting physician as referrer (REF), the site (FINESS) as custodian.
 *
 * Structured body (level 3): one "Acte imagerie" section (55111-9) per act, each with its
 * radiation-exposure sub-section (73569-6) when a dose is known and its DICOM object catalog
 * (121181) naming the study and each series (with its first object: the manifest lists them
 * all); a "Résultats" section (59776-5) for the
 * findings; exactly one "Conclusion" (19005-8); the addenda (55107-7).
 * PDF body (XDS-SD, level 1): the same header, the site's PDF in a nonXMLBody.
 *
 * Pure: study-documents.ts gathers the input; this only writes the XML.
 */
import type { INS } from '../patients/ins.ts';
import { insValue } from '../patients/ins.ts';

export const CR_IMG_LOINC = '18748-4';
export const LOINC = '2.16.840.1.113883.6.1';
export const DCM = '1.2.840.10008.2.16.4';
const SNOMED = '2.16.840.1.113883.6.96';
/** ANS identifier roots: RPPS of a professional ("8" + RPPS), FINESS of a structure ("1" + FINESS). */
export const RPPS_ROOT = '1.2.250.1.71.4.2.1';
export const FINESS_ROOT = '1.2.250.1.71.4.2.2';
const PROFESSION_SYSTEM = '1.2.250.1.213.1.1.4.5';

export interface CrImgDose {
  /** A DCM code of the CI-SIS value set "Quantité exposition rayonnements" (113813 DLP, 113830 CTDIvol, 113722 DAP...). */
  code: string;
  meaning: string;
  value: number;
  /** UCUM. */
  unit: string;
}

export interface CrImgInstance { SOPInstanceUID: string; SOPClassUID: string }
export interface CrImgSeries { SeriesInstanceUID: string; Modality: string; instances: CrImgInstance[] }

export interface CrImgAct {
  /** DICOM modality of the act (CT, MR, DX...). */
  modality: string;
  /** DICOM Body Part Examined, or the request's free text. */
  bodyPart: string;
  /** What was done, as the protocol says it. */
  description: string;
  doses: CrImgDose[];
}

export interface CrImgInput {
  /** The document's OID (ClinicalDocument/id), a new one per version. */
  documentId: string;
  /** The OID shared by every version of the document. */
  setId: string;
  version: number;
  /** The document this version replaces (RPLC), when not the first. */
  replaces?: string;
  patient: {
    /** Qualified INS only (shareableINS): the caller checks the status. */
    ins: INS;
    /** DICOM PN (family^given). */
    PatientName?: string;
    PatientSex?: string;
    /** YYYYMMDD. */
    PatientBirthDate?: string;
    /** Reference traits of the INS (identity record), preferred to the DICOM name when known. */
    birthName?: string;
    firstNames?: string[];
    /** INSEE code (COG) of the birth place. */
    birthPlaceCode?: string;
  };
  site: { name: string; finess: string };
  signer: { name: string; rpps: string };
  signedAt: Date;
  requestingPhysician: { name: string; rpps?: string };
  order: { placerOrderNumber: string; placerOrderOid: string; AccessionNumber?: string; accessionIssuerOid: string };
  /** When the images were taken (or the request made). */
  performedAt: Date;
  acts: CrImgAct[];
  study: { StudyInstanceUID: string; series: CrImgSeries[]; wadoBaseUrl?: string };
  clinicalContext: string;
  clinicalQuestion: string;
  findings: string;
  conclusion: string;
  addenda: Array<{ text: string; signedAt: Date }>;
  /** The XDS-SD variant: the report as the site's PDF, no structured body. */
  pdf?: Buffer;
}

/** Text as XML character data (characters XML 1.0 cannot hold are left out). */
export function xmlText(s: string): string {
  return s
    .replace(/[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '')
    .replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** HL7 TS in UTC with its offset (the CI-SIS asks for the offset whenever the time is given). */
export function cdaTime(d: Date): string {
  return `${d.toISOString().slice(0, 19).replace(/[-T:]/g, '')}+0000`;
}

const modalityNames: Record<string, string> = {
  CT: 'Tomodensitométrie', MR: 'Résonance magnétique', DX: 'Radiographie numérique', CR: 'Radiographie assistée par ordinateur',
  US: 'Échographie', MG: 'Mammographie', NM: 'Médecine nucléaire', PT: 'TEP : Tomographie par émission de positons',
  XA: 'Angiographie X-Ray', RF: 'Radio-fluoroscopie', RG: 'Imagerie radiographique', BMD: 'Ostéodensitométrie', IO: 'Radiographie intrabuccale', PX: 'Panaromique X-Ray',
};

/**
 * Body Part Examined (PS3.16 Annex L) to the SNOMED CT "whole structure" concepts the CI-SIS
 * value set JDV_LocalisationAnatomique_CISIS accepts for an act's location.
 */
const bodyParts: Record<string, [string, string]> = {
  HEAD: ['302548004', 'tête entière'], SKULL: ['731717004', 'crâne entier'], BRAIN: ['258335003', 'encéphale entier'], NECK: ['302550007', 'cou entier'],
  CHEST: ['302551006', 'thorax entier'], ABDOMEN: ['302553009', 'abdomen entier'], PELVIS: ['229765004', 'pelvis entier'],
  SPINE: ['44300000', 'colonne vertébrale entière'], CSPINE: ['361684008', 'colonne vertébrale cervicale entière'],
  TSPINE: ['243931006', 'colonne thoracique entière'], LSPINE: ['361686005', 'colonne vertébrale lombaire entière'],
  KNEE: ['361291001', 'région entière du genou'], ANKLE: ['361292008', 'région entière de la cheville'], FOOT: ['302545001', 'pied entier'],
  HIP: ['302543008', 'région entière de la hanche'], SHOULDER: ['361103004', "région entière de l'épaule"], ELBOW: ['76248009', 'région entière du coude'],
  WRIST: ['361289009', 'région entière du poignet'], HAND: ['302539009', 'main entière'], BREAST: ['181131000', 'sein entier'],
  HEART: ['302509004', 'cœur entier'], LUNG: ['181216001', 'poumon entier'], LIVER: ['181268008', 'foie entier'], KIDNEY: ['181414000', 'rein entier'],
  WHOLEBODY: ['38266002', 'corps entier'],
};

/** The SNOMED CT concept of a Body Part Examined, as XDS eventCodeList and the CDA name it; undefined when not in the value set. */
export function anatomicRegionOf(bodyPart: string): { code: string; scheme: string; display: string } | undefined {
  const found = bodyParts[bodyPart.toUpperCase()];
  return found ? { code: found[0], scheme: SNOMED, display: found[1] } : undefined;
}

const sopClassNames: Record<string, string> = {
  '1.2.840.10008.5.1.4.1.1.2': 'CT Image Storage', '1.2.840.10008.5.1.4.1.1.4': 'MR Image Storage', '1.2.840.10008.5.1.4.1.1.1': 'CR Image Storage',
  '1.2.840.10008.5.1.4.1.1.1.1': 'Digital X-Ray Image Storage - For Presentation', '1.2.840.10008.5.1.4.1.1.6.1': 'Ultrasound Image Storage',
  '1.2.840.10008.5.1.4.1.1.7': 'Secondary Capture Image Storage', '1.2.840.10008.5.1.4.1.1.104.1': 'Encapsulated PDF Storage',
  '1.2.840.10008.5.1.4.1.1.88.59': 'Key Object Selection Document Storage',
};

function personName(pn: string): { family: string; given: string } {
  const [family = '', given = ''] = pn.split('=')[0]!.split('^');
  return { family: family.trim(), given: given.trim() };
}

/** A free-text name ("Dr Anne Lecteur") or a DICOM PN ("LECTEUR^Anne") as CDA name parts. */
function nameXml(name: string): string {
  if (name.includes('^')) {
    const { family, given } = personName(name);
    return `<name>${given ? `<given>${xmlText(given)}</given>` : ''}<family>${xmlText(family || name)}</family></name>`;
  }
  return `<name><family>${xmlText(name.trim() || 'Inconnu')}</family></name>`;
}

function paragraphs(text: string): string {
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '');
  return lines.length === 0 ? '<paragraph>Néant</paragraph>' : lines.map((l) => `<paragraph>${xmlText(l)}</paragraph>`).join('');
}

const id = (root: string, extension?: string) => `<id root="${xmlText(root)}"${extension !== undefined ? ` extension="${xmlText(extension)}"` : ''}/>`;
const rppsId = (rpps: string) => id(RPPS_ROOT, `8${rpps}`);
const finessId = (finess: string) => id(FINESS_ROOT, `1${finess}`);
const radiologistCode = `<code code="G15_10/SM44" displayName="Médecin - Radio-diagnostic (SM)" codeSystem="${PROFESSION_SYSTEM}"/>`;

function organization(tag: string, site: CrImgInput['site']): string {
  return `<${tag}>${finessId(site.finess)}<name>${xmlText(site.name)}</name></${tag}>`;
}

function header(r: CrImgInput, level: 'structured' | 'pdf'): string {
  const time = cdaTime(r.signedAt);
  const sex = r.patient.PatientSex === 'M' || r.patient.PatientSex === 'F' ? r.patient.PatientSex : 'U';
  const sexName = { M: 'Masculin', F: 'Féminin', U: 'Inconnu' }[sex];
  const pn = personName(r.patient.PatientName ?? '');
  const birthName = r.patient.birthName ?? pn.family;
  const firstNames = r.patient.firstNames?.join(' ') ?? pn.given;
  const modality = r.acts[0]?.modality ?? 'OT';
  const bodyPart = bodyParts[r.acts[0]?.bodyPart.toUpperCase() ?? ''];
  const templates = level === 'structured'
    ? ['<templateId root="1.2.840.10008.9.1"/>', '<templateId root="1.2.840.10008.9.20"/>', '<templateId root="1.2.840.10008.9.21"/>',
      '<templateId root="1.2.250.1.213.1.1.1.45" extension="2024.01"/>']
    : ['<templateId root="1.3.6.1.4.1.19376.1.2.20"/>'];
  const author = `<assignedAuthor>${rppsId(r.signer.rpps)}${radiologistCode}<assignedPerson>${nameXml(r.signer.name)}</assignedPerson>${organization('representedOrganization', r.site)}</assignedAuthor>`;
  const radiologist = `<assignedEntity>${rppsId(r.signer.rpps)}${radiologistCode}<assignedPerson>${nameXml(r.signer.name)}</assignedPerson>${organization('representedOrganization', r.site)}</assignedEntity>`;
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:ps3-20="urn:dicom-org:ps3-20">',
    '<realmCode code="FR"/>',
    '<typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>',
    '<templateId root="2.16.840.1.113883.2.8.2.1"/>',
    '<templateId root="1.2.250.1.213.1.1.1.1"/>',
    ...templates,
    id(r.documentId),
    `<code code="${CR_IMG_LOINC}" displayName="CR d'imagerie médicale" codeSystem="${LOINC}" codeSystemName="LOINC"/>`,
    `<title>${xmlText(`CR d'imagerie médicale - ${r.acts.map((a) => a.description).join(' + ') || modality}`)}</title>`,
    `<effectiveTime value="${time}"/>`,
    '<confidentialityCode code="N" displayName="Normal" codeSystem="2.16.840.1.113883.5.25"/>',
    '<languageCode code="fr-FR"/>',
    `<setId root="${xmlText(r.setId)}"/>`,
    `<versionNumber value="${r.version}"/>`,
    '<recordTarget><patientRole>',
    id(r.patient.ins.oid, insValue(r.patient.ins)),
    '<patient classCode="PSN">',
    // The INS traits: birth name, birth first names, the first of them (qualifier BR).
    `<name><family qualifier="BR">${xmlText(birthName || 'INCONNU')}</family>${firstNames ? `<given>${xmlText(firstNames)}</given><given qualifier="BR">${xmlText(firstNames.split(/[ ,]/)[0]!)}</given>` : ''}</name>`,
    `<administrativeGenderCode code="${sex}" displayName="${sexName}" codeSystem="2.16.840.1.113883.5.1"/>`,
    r.patient.PatientBirthDate ? `<birthTime value="${xmlText(r.patient.PatientBirthDate)}"/>` : '<birthTime nullFlavor="UNK"/>',
    // The birth place (COG) is an INS trait the CI-SIS asks for: said unknown when the identity record has none.
    `<birthplace><place><addr>${r.patient.birthPlaceCode ? `<county>${xmlText(r.patient.birthPlaceCode)}</county>` : '<county nullFlavor="UNK"/>'}</addr></place></birthplace>`,
    '</patient></patientRole></recordTarget>',
    `<author><time value="${time}"/>${author}</author>`,
    `<custodian><assignedCustodian>${organization('representedCustodianOrganization', r.site).replace('<representedCustodianOrganization>', '<representedCustodianOrganization classCode="ORG" determinerCode="INSTANCE">')}</assignedCustodian></custodian>`,
    `<legalAuthenticator><time value="${time}"/><signatureCode code="S"/>${radiologist}</legalAuthenticator>`,
    // The requesting physician (PS3.20 referrer): their RPPS when the request gave it.
    `<participant typeCode="REF"><time nullFlavor="UNK"/><associatedEntity classCode="PROV">${r.requestingPhysician.rpps ? rppsId(r.requestingPhysician.rpps) : '<id nullFlavor="UNK"/>'}`
      + `<associatedPerson>${nameXml(r.requestingPhysician.name)}</associatedPerson></associatedEntity></participant>`,
    `<inFulfillmentOf><order>${id(r.order.placerOrderOid, r.order.placerOrderNumber)}`
      + (r.order.AccessionNumber ? `<ps3-20:accessionNumber root="${xmlText(r.order.accessionIssuerOid)}" extension="${xmlText(r.order.AccessionNumber)}"/>` : '<ps3-20:accessionNumber nullFlavor="UNK"/>')
      + '</order></inFulfillmentOf>',
    '<documentationOf><serviceEvent classCode="ACT">',
    id(r.study.StudyInstanceUID),
    `<code code="${CR_IMG_LOINC}" displayName="CR d'imagerie médicale" codeSystem="${LOINC}" codeSystemName="LOINC">`
      + `<translation code="${xmlText(modality)}" displayName="${xmlText(modalityNames[modality] ?? modality)}" codeSystem="${DCM}" codeSystemName="DCM">`
      + `<qualifier><name code="121139" displayName="Modalité d'imagerie" codeSystem="${DCM}" codeSystemName="DCM"/></qualifier></translation>`
      + (bodyPart ? `<translation code="${bodyPart[0]}" displayName="${xmlText(bodyPart[1])}" codeSystem="${SNOMED}" codeSystemName="SNOMED CT">`
        + `<qualifier><name code="39111-0" displayName="localisation anatomique" codeSystem="${LOINC}" codeSystemName="LOINC"/></qualifier></translation>` : '')
      + '</code>',
    `<effectiveTime><low value="${cdaTime(r.performedAt)}"/><high value="${time}"/></effectiveTime>`,
    `<performer typeCode="PRF">${radiologist}</performer>`,
    '</serviceEvent></documentationOf>',
    ...(r.replaces ? [`<relatedDocument typeCode="RPLC"><parentDocument>${id(r.replaces)}</parentDocument></relatedDocument>`] : []),
    '<componentOf><encompassingEncounter>',
    '<code code="AMB" displayName="Ambulatoire" codeSystem="2.16.840.1.113883.5.4"/>',
    `<effectiveTime><low value="${cdaTime(r.performedAt)}"/><high value="${time}"/></effectiveTime>`,
    `<location><healthCareFacility>${finessId(r.site.finess)}<code code="SA01" displayName="Etablissement Public de santé" codeSystem="1.2.250.1.71.4.2.4"/>`
      + `<location><name>${xmlText(r.site.name)}</name></location></healthCareFacility></location>`,
    '</encompassingEncounter></componentOf>',
  ].join('\n');
}

/** Ids of a document's sections and entries: derived from the document's id, so that one input gives one text. */
class Ids {
  private readonly counts = new Map<string, number>();
  constructor(private readonly documentId: string) {}
  next(kind: number): string {
    const n = (this.counts.get(String(kind)) ?? 0) + 1;
    this.counts.set(String(kind), n);
    return id(`${this.documentId}.${kind}`, String(n));
  }
}

const codeXml = (code: string, system: string, displayName: string, inner = '') =>
  `<code code="${xmlText(code)}" displayName="${xmlText(displayName)}" codeSystem="${system}" codeSystemName="${system === LOINC ? 'LOINC' : system === SNOMED ? 'SNOMED CT' : 'DCM'}"${inner ? `>${inner}</code>` : '/>'}`;

function section(ids: Ids, templates: string[], code: [string, string, string], title: string, text: string, inner = '', attributes = ''): string {
  return `<component><section${attributes}>${templates.map((t) => `<templateId root="${t}"/>`).join('')}${ids.next(1)}`
    + `${codeXml(code[0], code[1], code[2])}<title>${xmlText(title)}</title><text>${text}</text>${inner}</section></component>`;
}

const subsection = (ids: Ids, templates: string[], code: [string, string, string], title: string, text: string, inner = '') =>
  section(ids, templates, code, title, text, inner, ' classCode="DOCSECT" moodCode="EVN"');

function radiationSection(r: CrImgInput, ids: Ids, act: CrImgAct, ref: (s: string) => string): string {
  const at = cdaTime(r.performedAt);
  const text = `<paragraph><content ID="${ref('exposition')}">Exposition du patient aux rayonnements ionisants</content></paragraph>`
    + `<paragraph>Grossesse : <content ID="${ref('grossesse')}">inconnu</content></paragraph>`
    + `<table><tbody>${act.doses.map((d, i) => `<tr><td><content ID="${ref(`dose-${i + 1}`)}">${xmlText(d.meaning)}</content></td><td>${xmlText(String(d.value))} ${xmlText(d.unit)}</td></tr>`).join('')}</tbody></table>`;
  // Who justified the exposure (PS3.20 "irradiation authorizing"): the reading radiologist.
  const exposure = `<entry><procedure classCode="PROC" moodCode="EVN"><templateId root="1.2.250.1.213.1.1.3.165"/>`
    + codeXml('121290', DCM, 'Exposition du patient aux rayonnements ionisants', `<originalText><reference value="#${ref('exposition')}"/></originalText>`)
    + `<participant typeCode="RESP"><participantRole>${rppsId(r.signer.rpps)}${codeXml('113850', DCM, "Autorisation d'irradiation")}`
    + `<playingEntity>${nameXml(r.signer.name)}</playingEntity></participantRole></participant></procedure></entry>`;
  // The pregnancy status is not part of a teleradiology request: said unknown.
  const pregnancy = `<entry><observation classCode="OBS" moodCode="EVN"><templateId root="2.16.840.1.113883.10.20.6.2.13"/><templateId root="1.2.250.1.213.1.1.3.150"/>${ids.next(4)}`
    + `${codeXml('364320009', SNOMED, 'statut de grossesse')}<statusCode code="completed"/><effectiveTime value="${at}"/>`
    + `<value xsi:type="CD" code="261665006" displayName="inconnu" codeSystem="${SNOMED}" codeSystemName="SNOMED CT"><originalText><reference value="#${ref('grossesse')}"/></originalText></value>`
    + '<targetSiteCode nullFlavor="NA"/></observation></entry>';
  const quantities = act.doses.map((d, i) => `<entry><observation classCode="OBS" moodCode="EVN"><templateId root="2.16.840.1.113883.10.20.6.2.14"/><templateId root="1.2.250.1.213.1.1.3.154"/>`
    + `${ids.next(5)}${codeXml(d.code, DCM, d.meaning)}<text><reference value="#${ref(`dose-${i + 1}`)}"/></text><statusCode code="completed"/><effectiveTime value="${at}"/>`
    + `<value xsi:type="PQ" value="${d.value}" unit="${xmlText(d.unit)}"/>${targetSite(act)}</observation></entry>`).join('');
  return subsection(ids, ['1.2.840.10008.9.8', '1.2.250.1.213.1.1.2.215'], ['73569-6', LOINC, 'Exposition aux rayonnements et informations de radioprotection'],
    'Exposition aux rayonnements et informations de radioprotection', text, exposure + pregnancy + quantities);
}

function targetSite(act: CrImgAct, originalText = ''): string {
  const bodyPart = bodyParts[act.bodyPart.toUpperCase()];
  const inner = originalText ? `<originalText><reference value="#${originalText}"/></originalText>` : '';
  return bodyPart
    ? `<targetSiteCode code="${bodyPart[0]}" displayName="${xmlText(bodyPart[1])}" codeSystem="${SNOMED}" codeSystemName="SNOMED CT">${inner}</targetSiteCode>`
    : `<targetSiteCode nullFlavor="UNK">${inner}</targetSiteCode>`;
}

function catalogSection(r: CrImgInput, ids: Ids, ref: (s: string) => string): string {
  const at = cdaTime(r.performedAt);
  const wado = (series: CrImgSeries, inst: CrImgInstance) => r.study.wadoBaseUrl
    ? `${r.study.wadoBaseUrl}/studies/${r.study.StudyInstanceUID}/series/${series.SeriesInstanceUID}/instances/${inst.SOPInstanceUID}` : undefined;
  const rows = r.study.series.map((s, i) => `<tr><td>${xmlText(r.study.StudyInstanceUID)}</td><td><content ID="${ref(`serie-${i + 1}-modalite`)}">${xmlText(modalityNames[s.Modality] ?? s.Modality)}</content></td>`
    + `<td>${xmlText(s.SeriesInstanceUID)}</td><td>${s.instances.length}</td></tr>`).join('');
  // The IHE Invoke Image Display link (src/api/iid.ts): the reader opens the study in the
  // viewer after a Pro Santé Connect login, the access policy deciding as for any view.
  const iid = r.study.wadoBaseUrl
    ? `${r.study.wadoBaseUrl.replace(/\/dicom-web$/, '')}/IHEInvokeImageDisplay?requestType=STUDY&studyUID=${r.study.StudyInstanceUID}` : undefined;
  const text = `<table><thead><tr><th>Examen</th><th>Modalité</th><th>Série</th><th>Objets</th></tr></thead><tbody>${rows || '<tr><td>Aucune série</td></tr>'}</tbody></table>`
    + (iid ? `<paragraph><linkHtml href="${xmlText(iid)}">Voir les images</linkHtml></paragraph>` : '');
  const instance = (s: CrImgSeries, inst: CrImgInstance) => {
    const url = wado(s, inst);
    return `<entryRelationship typeCode="COMP"><observation classCode="DGIMG" moodCode="EVN"><templateId root="1.2.840.10008.9.18"/><templateId root="1.2.250.1.213.1.1.3.157"/>${id(inst.SOPInstanceUID)}`
      + `<code code="${xmlText(inst.SOPClassUID)}" displayName="${xmlText(sopClassNames[inst.SOPClassUID] ?? inst.SOPClassUID)}" codeSystem="1.2.840.10008.2.6.1" codeSystemName="DCMUID"/>`
      + (url ? `<text mediaType="application/dicom"><reference value="${xmlText(url)}"/></text>` : '')
      + `<effectiveTime value="${at}"/></observation></entryRelationship>`;
  };
  // One entry per series, each naming the study, the series and its first object: the CI-SIS
  // schematron takes exactly one series per study act and one object per series act (the
  // manifest, not the report, lists every object).
  const entries = r.study.series.filter((s) => s.instances.length > 0).map((s) => {
    const i = r.study.series.indexOf(s);
    const series = `<entryRelationship typeCode="COMP"><act classCode="ACT" moodCode="EVN"><templateId root="1.2.840.10008.9.17"/><templateId root="1.2.250.1.213.1.1.3.156"/>${id(s.SeriesInstanceUID)}`
      + codeXml('113015', DCM, 'Séries', `<qualifier><name code="121139" displayName="Modalité" codeSystem="${DCM}" codeSystemName="DCM"/>`
        + `<value code="${xmlText(s.Modality)}" displayName="${xmlText(modalityNames[s.Modality] ?? s.Modality)}" codeSystem="${DCM}" codeSystemName="DCM"><originalText><reference value="#${ref(`serie-${i + 1}-modalite`)}"/></originalText></value></qualifier>`)
      + `<effectiveTime value="${at}"/>${instance(s, s.instances[0]!)}</act></entryRelationship>`;
    return `<entry><act classCode="ACT" moodCode="EVN"><templateId root="1.2.840.10008.9.16"/><templateId root="1.2.250.1.213.1.1.3.155"/>${id(r.study.StudyInstanceUID)}`
      + `${codeXml('113014', DCM, 'Examen')}<effectiveTime value="${at}"/>${series}</act></entry>`;
  });
  return subsection(ids, ['2.16.840.1.113883.10.20.6.1.1', '1.2.250.1.213.1.1.2.217'], ['121181', DCM, "Catalogue d'objets DICOM"], "Catalogue d'objets DICOM", text, entries.join(''));
}

function actSection(r: CrImgInput, ids: Ids, act: CrImgAct, n: number): string {
  const modalityName = modalityNames[act.modality] ?? act.modality;
  const ref = (s: string) => `acte-${n}-${s}`;
  const bodyPart = bodyParts[act.bodyPart.toUpperCase()];
  const text = '<table><tbody>'
    + `<tr><td>Acte</td><td><content ID="${ref('description')}">${xmlText(act.description)}</content></td></tr>`
    + `<tr><td>Modalité</td><td><content ID="${ref('modalite')}">${xmlText(modalityName)}</content></td></tr>`
    + `<tr><td>Localisation</td><td><content ID="${ref('localisation')}">${xmlText(bodyPart?.[1] ?? act.bodyPart)}</content></td></tr>`
    + '</tbody></table>';
  const procedure = `<entry><procedure classCode="PROC" moodCode="EVN"><templateId root="1.2.840.10008.9.14"/><templateId root="1.2.250.1.213.1.1.3.153"/>${ids.next(3)}`
    + codeXml(CR_IMG_LOINC, LOINC, "CR d'imagerie médicale", `<originalText><reference value="#${ref('description')}"/></originalText>`)
    + `<text><reference value="#${ref('description')}"/></text><effectiveTime value="${cdaTime(r.performedAt)}"/>`
    + `<methodCode code="${xmlText(act.modality)}" displayName="${xmlText(modalityName)}" codeSystem="${DCM}" codeSystemName="DCM"><originalText><reference value="#${ref('modalite')}"/></originalText></methodCode>`
    + `${targetSite(act, ref('localisation'))}</procedure></entry>`;
  const inner = procedure + (act.doses.length > 0 ? radiationSection(r, ids, act, ref) : '') + catalogSection(r, ids, ref);
  return section(ids, ['1.2.840.10008.9.3', '1.2.250.1.213.1.1.2.206'], ['55111-9', LOINC, 'Current imaging procedure descriptions'], "Acte d'imagerie", text, inner);
}

function clinicalSection(r: CrImgInput, ids: Ids): string {
  const request = subsection(ids, ['1.2.840.10008.9.7', '1.2.250.1.213.1.1.2.211'], ['55115-0', LOINC, 'Demande d\'examen'], 'Demande d\'examen',
    paragraphs(r.clinicalQuestion));
  // The CI-SIS asks for the medical and surgical history and the contraindications: a
  // teleradiology request carries the clinical context only, the rest was not asked (NASK).
  const observation = (code: string, displayName: string, value: string) => `<entry><observation classCode="OBS" moodCode="EVN">`
    + `<templateId root="2.16.840.1.113883.10.20.6.2.13"/><templateId root="1.2.250.1.213.1.1.3.150"/>${ids.next(6)}${codeXml(code, LOINC, displayName)}`
    + `<statusCode code="completed"/>${value}<targetSiteCode nullFlavor="NA"/></observation></entry>`;
  const history = subsection(ids, ['2.16.840.1.113883.10.20.22.2.39', '1.2.250.1.213.1.1.2.213'], ['11329-0', LOINC, 'Historique médical'], 'Contexte clinique',
    `<paragraph><content ID="contexte-clinique">${xmlText(r.clinicalContext.trim() || 'Non renseigné')}</content></paragraph>`,
    observation('11348-0', 'Antécédents médicaux', '<value xsi:type="CD"><originalText><reference value="#contexte-clinique"/></originalText></value>')
    + observation('47519-4', 'Antécédents chirurgicaux', '<value xsi:type="CD" nullFlavor="NASK"/>')
    // The value set of contraindications has no "not asked": said in words.
    + observation('64100-1', 'Contre-indications', '<value xsi:type="ST">Non renseignées par la demande</value>'));
  return section(ids, ['1.2.840.10008.9.2', '1.2.250.1.213.1.1.2.205'], ['55752-0', LOINC, 'Clinical information'], 'Informations cliniques', '', request + history);
}

function addendumSection(r: CrImgInput, ids: Ids): string {
  const last = r.addenda.at(-1)!;
  const author = `<author><time value="${cdaTime(last.signedAt)}"/><assignedAuthor>${rppsId(r.signer.rpps)}${radiologistCode}`
    + `<assignedPerson>${nameXml(r.signer.name)}</assignedPerson>${organization('representedOrganization', r.site)}</assignedAuthor></author>`;
  return section(ids, ['1.2.840.10008.9.6', '1.2.250.1.213.1.1.2.210'], ['55107-7', LOINC, 'Addendum'], 'Addendum',
    r.addenda.map((a) => `<paragraph>${xmlText(`${a.signedAt.toISOString().slice(0, 10)} : ${a.text}`)}</paragraph>`).join(''), author);
}

function structuredBody(r: CrImgInput): string {
  const ids = new Ids(r.documentId);
  const parts = [
    clinicalSection(r, ids),
    ...r.acts.map((a, i) => actSection(r, ids, a, i + 1)),
    ...(r.findings.trim() ? [section(ids, ['2.16.840.1.113883.10.20.6.1.2', '1.2.250.1.213.1.1.2.208'], ['59776-5', LOINC, "Résultats de l'acte"], 'Résultats', paragraphs(r.findings))] : []),
    section(ids, ['1.2.840.10008.9.5', '1.2.250.1.213.1.1.2.209'], ['19005-8', LOINC, 'Conclusions'], 'Conclusion', paragraphs(r.conclusion)),
    ...(r.addenda.length > 0 ? [addendumSection(r, ids)] : []),
  ];
  return `<component><structuredBody>${parts.join('\n')}</structuredBody></component>`;
}

/**
 * The CR-IMG document's XML (UTF-8). Structured unless `pdf` is given (then the XDS-SD
 * variant). The same input gives the same text.
 */
export function crImgDocumentOf(r: CrImgInput): string {
  const body = r.pdf
    ? `<component><nonXMLBody><text mediaType="application/pdf" representation="B64">${r.pdf.toString('base64')}</text></nonXMLBody></component>`
    : structuredBody(r);
  return `${header(r, r.pdf ? 'pdf' : 'structured')}\n${body}\n</ClinicalDocument>\n`;
}
