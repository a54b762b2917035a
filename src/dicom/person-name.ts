/**
 * Person-name folding for matching (PS3.18 fuzzymatching, and our default for names):
 * accents removed, case folded, component separators kept.
 * The index stores this form beside the original so a query never folds a column.
 */
export function foldPersonName(name: string): string {
  return name
    .normalize('NFD')
    .replace(/[\u0300-\u036f]/g, '')
    .replace(/ß/g, 'SS')
    .replace(/Æ/gi, 'AE')
    .replace(/Œ/gi, 'OE')
    .toUpperCase()
    .trim();
}
