/**
 * Where the viewer reads a study: Atrium's own DICOMweb, or, for a study found in the DMP
 * (`/app/viewer?StudyInstanceUID=…&source=dmp`), the DRIMbox consumer's proxy, which fetches
 * what the study's KOS manifest lists from the source DRIMbox with the user's Pro Santé
 * Connect token and keeps nothing (src/api/drimbox-consumer.ts). Both answer the same
 * WADO-RS and QIDO-RS paths, so the viewer only swaps the root.
 */
export const remoteDicomWebRoot = '/api/drimbox/dicom-web';

/** True when the page shows a study of another territory, found in the DMP. */
export function isRemoteStudy(): boolean {
  return new URLSearchParams(window.location.search).get('source') === 'dmp';
}

/** The DICOMweb root of the study shown ('/dicom-web' or the DRIMbox consumer's proxy). */
export function dicomWebRoot(): string {
  return isRemoteStudy() ? remoteDicomWebRoot : '/dicom-web';
}
