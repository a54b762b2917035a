import { createContext, useContext } from 'react';

/** French first; English for visiting professionals. */
export type Language = 'fr' | 'en';

const fr = {
  appName: 'Atrium',
  login: 'Connexion',
  loginTitle: 'Connexion au portail d\'imagerie',
  loginName: 'Identifiant',
  password: 'Mot de passe',
  signIn: 'Se connecter',
  proSanteConnect: 'Se connecter avec Pro Santé Connect',
  or: 'ou',
  logout: 'Se déconnecter',
  loginRefused: 'Identifiant ou mot de passe incorrect.',
  search: 'Rechercher',
  searchTitle: 'Recherche de patients',
  patientName: 'Nom',
  birthDate: 'Date de naissance',
  ins: 'INS',
  patientId: 'IPP',
  site: 'Site',
  anySite: 'Tous les sites',
  noPatient: 'Aucun patient trouvé.',
  patientsShown: 'Patients',
  previousPage: 'Précédents',
  nextPage: 'Suivants',
  refineSearch: 'D\'autres patients correspondent : précisez la recherche ou passez aux suivants.',
  searchEmpty: 'Saisissez au moins un critère : un nom (« DUPONT Marie », « dupont m »), une date de naissance, un INS ou un identifiant.',
  namePlaceholder: 'NOM Prénom',
  studies: 'Examens',
  sex: 'Sexe',
  timeline: 'Parcours d\'imagerie',
  recentElsewhere: 'Examens récents dans d\'autres sites : à consulter avant d\'en prescrire un nouveau',
  recentHidden: 'autre(s) examen(s) récent(s) ailleurs, que vous ne pouvez pas ouvrir',
  dose: 'Dose reçue',
  showDose: 'Afficher la dose',
  effectiveDose: 'Dose efficace (mSv)',
  cumulativeDose: 'Cumul (mSv)',
  partialDose: 'partiel',
  date: 'Date',
  modality: 'Modalité',
  bodyPart: 'Région',
  description: 'Description',
  report: 'Compte rendu',
  reportNone: 'non disponible',
  open: 'Ouvrir',
  download: 'Télécharger (ZIP)',
  back: 'Retour',
  viewer: 'Visionneuse',
  series: 'Séries',
  images: 'images',
  loading: 'Chargement…',
  loaded: 'chargées',
  notFound: 'Cet examen n\'existe pas ou vous n\'avez pas de raison d\'y accéder.',
  presets: 'Fenêtrage',
  presetDefault: 'Défaut',
  presetLung: 'Poumon',
  presetBone: 'Os',
  presetBrain: 'Cerveau',
  presetAbdomen: 'Abdomen',
  tools: 'Outils',
  toolWindowLevel: 'Fenêtre/niveau',
  toolPan: 'Déplacer',
  toolZoom: 'Zoom',
  toolLength: 'Longueur',
  toolAngle: 'Angle',
  reset: 'Réinitialiser',
  layout: 'Disposition',
  comparePrior: 'Comparer à l\'antérieur',
  noPrior: 'Pas d\'examen antérieur',
  cine: 'Ciné',
  stop: 'Arrêter',
  shortcuts: 'Raccourcis : ↑/↓ image, 1–5 fenêtrage, W fenêtre, P déplacer, Z zoom, L longueur, A angle, R réinitialiser, C ciné',
  shareTitle: 'Images partagées avec vous',
  sharePin: 'Code reçu avec le lien',
  shareOpen: 'Voir les images',
  sharePinWrong: 'Code incorrect.',
  shareLocked: 'Ce lien est verrouillé après trop d\'essais.',
  shareGone: 'Ce lien n\'est plus valable.',
  shareNoToken: 'Ce lien est incomplet.',
  error: 'Erreur',
  language: 'English',
};

export type Texts = typeof fr;

const en: Texts = {
  appName: 'Atrium',
  login: 'Log in',
  loginTitle: 'Log in to the imaging portal',
  loginName: 'Login',
  password: 'Password',
  signIn: 'Log in',
  proSanteConnect: 'Log in with Pro Santé Connect',
  or: 'or',
  logout: 'Log out',
  loginRefused: 'Wrong login or password.',
  search: 'Search',
  searchTitle: 'Patient search',
  patientName: 'Name',
  birthDate: 'Birth date',
  ins: 'INS',
  patientId: 'Patient ID',
  site: 'Site',
  anySite: 'All sites',
  noPatient: 'No patient found.',
  patientsShown: 'Patients',
  previousPage: 'Previous',
  nextPage: 'Next',
  refineSearch: 'More patients match: narrow the search or go to the next ones.',
  searchEmpty: 'Enter at least one criterion: a name ("DUPONT Marie", "dupont m"), a birth date, an INS or an identifier.',
  namePlaceholder: 'SURNAME Given name',
  studies: 'Exams',
  sex: 'Sex',
  timeline: 'Imaging timeline',
  recentElsewhere: 'Recent exams at other sites: look at them before ordering another',
  recentHidden: 'other recent exam(s) elsewhere, which you may not open',
  dose: 'Radiation dose',
  showDose: 'Show the dose',
  effectiveDose: 'Effective dose (mSv)',
  cumulativeDose: 'Cumulative (mSv)',
  partialDose: 'partial',
  date: 'Date',
  modality: 'Modality',
  bodyPart: 'Body part',
  description: 'Description',
  report: 'Report',
  reportNone: 'not available',
  open: 'Open',
  download: 'Download (ZIP)',
  back: 'Back',
  viewer: 'Viewer',
  series: 'Series',
  images: 'images',
  loading: 'Loading…',
  loaded: 'loaded',
  notFound: 'This exam does not exist or you have no reason to access it.',
  presets: 'Window',
  presetDefault: 'Default',
  presetLung: 'Lung',
  presetBone: 'Bone',
  presetBrain: 'Brain',
  presetAbdomen: 'Abdomen',
  tools: 'Tools',
  toolWindowLevel: 'Window/level',
  toolPan: 'Pan',
  toolZoom: 'Zoom',
  toolLength: 'Length',
  toolAngle: 'Angle',
  reset: 'Reset',
  layout: 'Layout',
  comparePrior: 'Compare with prior',
  noPrior: 'No prior exam',
  cine: 'Cine',
  stop: 'Stop',
  shortcuts: 'Shortcuts: ↑/↓ image, 1–5 window presets, W window, P pan, Z zoom, L length, A angle, R reset, C cine',
  shareTitle: 'Images shared with you',
  sharePin: 'Code received with the link',
  shareOpen: 'View the images',
  sharePinWrong: 'Wrong code.',
  shareLocked: 'This link is locked after too many attempts.',
  shareGone: 'This link is no longer valid.',
  shareNoToken: 'This link is incomplete.',
  error: 'Error',
  language: 'Français',
};

export const texts: Record<Language, Texts> = { fr, en };

export function initialLanguage(): Language {
  const saved = window.localStorage.getItem('atrium.language');
  if (saved === 'fr' || saved === 'en') return saved;
  return navigator.language.toLowerCase().startsWith('en') ? 'en' : 'fr';
}

export const TextsContext = createContext<Texts>(fr);

export function useTexts(): Texts {
  return useContext(TextsContext);
}

/** A DICOM date (YYYYMMDD) as the language writes it. */
export function formatDicomDate(da: string | undefined, language: Language): string {
  if (!da || !/^\d{8}$/.test(da)) return da ?? '';
  const [y, m, d] = [da.slice(0, 4), da.slice(4, 6), da.slice(6, 8)];
  return language === 'fr' ? `${d}/${m}/${y}` : `${y}-${m}-${d}`;
}

/** A DICOM person name (Family^Given) for display. */
export function formatPersonName(pn: string | undefined): string {
  if (!pn) return '';
  const [family = '', given = ''] = pn.split('=')[0]!.split('^');
  return [family.toUpperCase(), given].filter((s) => s !== '').join(' ');
}
