/**
 * The study's non-image objects in the viewer: an encapsulated PDF (a signed report) shown by
 * the browser's own PDF viewer from a blob URL, a structured report (Basic, Enhanced,
 * Comprehensive SR) as its content tree in readable text, a segmentation by where it is drawn
 * (segmentation.tsx).
 */
import { useEffect, useState } from 'react';
import { getJson } from '../api.ts';
import { num, str, tag, type DicomJson } from '../dicom-json.ts';
import type { Language } from '../i18n.ts';
import { Waveform } from './waveform.tsx';
import { dicomWebRoot } from './data-source.ts';
import { SegmentationNote, SegmentationStorage } from './segmentation.tsx';

export const SOPClass = {
  EncapsulatedPDF: '1.2.840.10008.5.1.4.1.1.104.1',
  BasicTextSR: '1.2.840.10008.5.1.4.1.1.88.11',
  EnhancedSR: '1.2.840.10008.5.1.4.1.1.88.22',
  ComprehensiveSR: '1.2.840.10008.5.1.4.1.1.88.33',
  KeyObjectSelection: '1.2.840.10008.5.1.4.1.1.88.59',
} as const;

const structuredReports: ReadonlySet<string> = new Set([SOPClass.BasicTextSR, SOPClass.EnhancedSR, SOPClass.ComprehensiveSR]);

/**
 * Modalities of series that hold no images: documents, reports, key object selections,
 * presentation states, waveforms (ECG, haemodynamics, audio), segmentations and RT objects.
 */
const nonImageModalities: ReadonlySet<string> = new Set(['DOC', 'SR', 'KO', 'PR', 'ECG', 'HD', 'EPS', 'RESP', 'AU', 'SEG', 'RTSTRUCT', 'RTPLAN', 'RTRECORD', 'REG']);

/** A waveform (PS3.3 A.34: 12-lead ECG, haemodynamic, audio…) by its SOP class. */
const isWaveform = (sopClass: string) => sopClass.startsWith('1.2.840.10008.5.1.4.1.1.9.');

export function isImageSeries(Modality: string): boolean {
  return !nonImageModalities.has(Modality);
}

/** Sequence items of the DICOM JSON model. */
export function items(ds: DicomJson, t: string): DicomJson[] {
  return (ds[t]?.Value ?? []) as DicomJson[];
}

const texts = {
  fr: {
    documents: 'Documents', close: 'Fermer', loading: 'Chargement…', unsupported: 'Document non affichable ici', pdf: 'Document PDF', failed: 'Le document n\'a pas pu être chargé.',
    waveform: 'Tracé (ECG ou autre signal) illisible ici ; il fait partie de l\'examen téléchargé.',
  },
  en: {
    documents: 'Documents', close: 'Close', loading: 'Loading…', unsupported: 'This document cannot be shown here', pdf: 'PDF document', failed: 'The document could not be loaded.',
    waveform: 'This waveform (ECG or other signal) cannot be read here; it is part of the downloaded study.',
  },
} as const;

export function documentTexts(language: Language) {
  return texts[language];
}

export interface SeriesRef {
  StudyInstanceUID: string;
  SeriesInstanceUID: string;
  Modality: string;
  SeriesDescription: string;
}

function seriesUrl(s: SeriesRef): string {
  return `${dicomWebRoot()}/studies/${encodeURIComponent(s.StudyInstanceUID)}/series/${encodeURIComponent(s.SeriesInstanceUID)}`;
}

/** The Encapsulated Document (0042,0011) bytes: inline in the metadata when small, else its bulk data. */
async function encapsulatedDocument(s: SeriesRef, instance: DicomJson): Promise<Blob> {
  const type = str(instance, '00420012') ?? 'application/pdf';
  const inline = instance['00420011']?.InlineBinary;
  if (inline) return new Blob([Uint8Array.from(atob(inline), (c) => c.charCodeAt(0))], { type });
  const sop = str(instance, tag.SOPInstanceUID) ?? '';
  const r = await fetch(`${seriesUrl(s)}/instances/${encodeURIComponent(sop)}/bulk/00420011`, { headers: { accept: 'application/octet-stream' }, credentials: 'same-origin' });
  if (!r.ok) throw new Error(`bulk data: ${r.status}`);
  return new Blob([await r.arrayBuffer()], { type });
}

function PdfDocument({ series, instance, language }: { series: SeriesRef; instance: DicomJson; language: Language }) {
  const t = texts[language];
  const [url, setUrl] = useState<string>();
  const [failed, setFailed] = useState(false);
  useEffect(() => {
    let objectUrl: string | undefined;
    let cancelled = false;
    encapsulatedDocument(series, instance).then((blob) => {
      if (cancelled) return;
      objectUrl = URL.createObjectURL(blob);
      setUrl(objectUrl);
    }, () => setFailed(true));
    return () => {
      cancelled = true;
      if (objectUrl) URL.revokeObjectURL(objectUrl);
    };
  }, [series.SeriesInstanceUID, str(instance, tag.SOPInstanceUID)]);
  if (failed) return <p className="error" role="alert">{t.failed}</p>;
  if (!url) return <p className="status">{t.loading}</p>;
  const title = str(instance, '00420010') ?? t.pdf;
  return <iframe className="document-pdf" src={url} title={title} data-testid="document-pdf" />;
}

const codeMeaning = (ds: DicomJson, t: string) => {
  const code = items(ds, t)[0];
  return code ? str(code, '00080104') ?? str(code, '00080100') : undefined;
};

/** What an SR content item says, by its Value Type (PS3.3 C.17.3.2.1). */
function contentValue(item: DicomJson): string | undefined {
  switch (str(item, '0040A040')) {
    case 'TEXT': return str(item, '0040A160');
    case 'CODE': return codeMeaning(item, '0040A168');
    case 'NUM': {
      const measured = items(item, '0040A300')[0];
      if (!measured) return undefined;
      const unit = items(measured, '004008EA')[0];
      return `${str(measured, '0040A30A') ?? ''} ${unit ? str(unit, '00080100') ?? str(unit, '00080104') ?? '' : ''}`.trim();
    }
    case 'DATETIME': return str(item, '0040A120');
    case 'DATE': return str(item, '0040A121');
    case 'TIME': return str(item, '0040A122');
    case 'PNAME': return str(item, '0040A123')?.replaceAll('^', ' ').trim();
    case 'UIDREF': return str(item, '0040A124');
    default: return undefined;
  }
}

function ContentItems({ list }: { list: DicomJson[] }) {
  if (list.length === 0) return null;
  return (
    <ul className="sr-items">
      {list.map((item, i) => {
        const name = codeMeaning(item, '0040A043');
        const value = contentValue(item);
        return (
          <li key={i}>
            {name && <strong>{name}</strong>}{name && value !== undefined ? ' : ' : ''}{value !== undefined && <span className="sr-value">{value}</span>}
            <ContentItems list={items(item, '0040A730')} />
          </li>
        );
      })}
    </ul>
  );
}

/** A structured report's content tree: the document title, then its items nested as the tree is. */
export function StructuredReport({ instance }: { instance: DicomJson }) {
  const title = codeMeaning(instance, '0040A043');
  return (
    <article className="sr" data-testid="document-sr">
      {title && <h3>{title}</h3>}
      <ContentItems list={items(instance, '0040A730')} />
    </article>
  );
}

/** The objects of one non-image series, each shown as its kind allows. */
export function DocumentPanel({ series, language, onClose }: { series: SeriesRef; language: Language; onClose: () => void }) {
  const t = texts[language];
  const [instances, setInstances] = useState<DicomJson[] | 'failed'>();
  useEffect(() => {
    setInstances(undefined);
    getJson<DicomJson[]>(`${seriesUrl(series)}/metadata`, 'application/dicom+json').then(
      (list) => setInstances(list.sort((a, b) => (num(a, tag.InstanceNumber) ?? 0) - (num(b, tag.InstanceNumber) ?? 0))),
      () => setInstances('failed'),
    );
  }, [series.SeriesInstanceUID]);
  return (
    <section className="document-panel" data-testid="document-panel" aria-label={series.SeriesDescription || t.documents}>
      <div className="document-bar">
        <strong>{series.Modality} {series.SeriesDescription}</strong>
        <button type="button" onClick={onClose} data-testid="document-close">{t.close}</button>
      </div>
      {instances === undefined && <p className="status">{t.loading}</p>}
      {instances === 'failed' && <p className="error" role="alert">{t.failed}</p>}
      {Array.isArray(instances) && instances.map((instance) => {
        const sopClass = str(instance, tag.SOPClassUID) ?? '';
        const key = str(instance, tag.SOPInstanceUID) ?? '';
        if (sopClass === SOPClass.EncapsulatedPDF) return <PdfDocument key={key} series={series} instance={instance} language={language} />;
        if (structuredReports.has(sopClass)) return <StructuredReport key={key} instance={instance} />;
        if (isWaveform(sopClass)) return <Waveform key={key} instance={instance} instanceUrl={`${seriesUrl(series)}/instances/${encodeURIComponent(key)}`} fallback={t.waveform} />;
        if (sopClass === SegmentationStorage) return <SegmentationNote key={key} StudyInstanceUID={series.StudyInstanceUID} instance={instance} language={language} />;
        return <p key={key} className="muted">{t.unsupported} ({sopClass})</p>;
      })}
    </section>
  );
}
