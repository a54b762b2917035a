"""Writes an X-Ray Radiation Dose SR (TID 10011, CT) for the dose tests.

usage: rdsr.py OUT.dcm PatientID StudyInstanceUID StudyDate (complete|malformed) [SOPInstanceUID]
complete: one head acquisition, CTDIvol 50 mGy, DLP 800 mGy.cm, total 800.
malformed: two acquisitions, the second without its DLP, and no accumulated total.
"""
import sys
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

out, patient_id, study_uid, study_date, kind = sys.argv[1:6]


def code(value, scheme, meaning):
    c = Dataset()
    c.CodeValue = value
    c.CodingSchemeDesignator = scheme
    c.CodeMeaning = meaning
    return c


def item(value_type, concept):
    i = Dataset()
    i.RelationshipType = 'CONTAINS'
    i.ValueType = value_type
    i.ConceptNameCodeSequence = [code(*concept)]
    return i


def num(concept, value, unit):
    i = item('NUM', concept)
    mv = Dataset()
    mv.NumericValue = value
    mv.MeasurementUnitsCodeSequence = [code(unit, 'UCUM', unit)]
    i.MeasuredValueSequence = [mv]
    return i


def container(concept, children):
    i = item('CONTAINER', concept)
    i.ContinuityOfContent = 'SEPARATE'
    i.ContentSequence = children
    return i


def acquisition(ctdi, dlp):
    target = item('CODE', ('123014', 'DCM', 'Target Region'))
    target.ConceptCodeSequence = [code('T-D1100', 'SRT', 'Head')]
    dose = [num(('113830', 'DCM', 'Mean CTDIvol'), ctdi, 'mGy')]
    if dlp is not None:
        dose.append(num(('113838', 'DCM', 'DLP'), dlp, 'mGy.cm'))
    return container(('113819', 'DCM', 'CT Acquisition'), [target, container(('113829', 'DCM', 'CT Dose'), dose)])


if kind == 'complete':
    content = [
        container(('113811', 'DCM', 'CT Accumulated Dose Data'), [num(('113813', 'DCM', 'CT Dose Length Product Total'), '800', 'mGy.cm')]),
        acquisition('50', '800'),
    ]
else:
    content = [
        container(('113811', 'DCM', 'CT Accumulated Dose Data'), []),
        acquisition('50', '300'),
        acquisition('48', None),
    ]

ds = Dataset()
ds.SOPClassUID = '1.2.840.10008.5.1.4.1.1.88.67'
ds.SOPInstanceUID = sys.argv[6] if len(sys.argv) > 6 else generate_uid()
ds.StudyInstanceUID = study_uid
ds.SeriesInstanceUID = generate_uid()
ds.PatientID = patient_id
ds.PatientName = 'Dose^Test'
ds.StudyDate = study_date
ds.StudyTime = '100000'
ds.Modality = 'SR'
ds.SeriesNumber = '99'
ds.InstanceNumber = '1'
ds.ValueType = 'CONTAINER'
ds.ConceptNameCodeSequence = [code('113701', 'DCM', 'X-Ray Radiation Dose Report')]
ds.ContinuityOfContent = 'SEPARATE'
ds.CompletionFlag = 'COMPLETE'
ds.VerificationFlag = 'UNVERIFIED'
ds.ContentSequence = content

meta = FileMetaDataset()
meta.MediaStorageSOPClassUID = ds.SOPClassUID
meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
meta.TransferSyntaxUID = ExplicitVRLittleEndian
ds.file_meta = meta
ds.is_little_endian = True
ds.is_implicit_VR = False
ds.save_as(out, write_like_original=False)
