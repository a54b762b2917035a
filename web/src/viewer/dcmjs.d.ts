/** The part of dcmjs (which ships no type declarations) the viewer uses to write a DICOM object. */
declare module 'dcmjs' {
  type Denaturalized = Record<string, unknown>;
  const dcmjs: {
    data: {
      DicomMetaDictionary: {
        denaturalizeDataset(dataset: Record<string, unknown>): Denaturalized;
        /** By '(GGGG,EEEE)': the attribute's keyword. */
        dictionary: Record<string, { name?: string } | undefined>;
      };
      DicomDict: new (meta: Denaturalized) => { dict: Denaturalized; write(): ArrayBuffer };
    };
  };
  export default dcmjs;
}
