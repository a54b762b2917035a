"""A small CT series and DICOM Segmentations of it, written with pydicom (test/viewer-segmentation.test.ts).

argv: the output folder, PatientID, PatientName, StudyInstanceUID. Writes:

  ct-1.dcm … ct-4.dcm  CT 64 x 64, 1 mm slices at z = 0..3, a bright square rows and columns 16..31
                       on every slice (700 HU on a -1000 HU background)
  seg.dcm              BINARY SEG, its frames naming their source image: "Nodule" (red) on slice 2,
                       rows and columns 16..31 (the square); "Kyste" (green) on slice 2, rows and
                       columns 40..47
  seg-positions.dcm    BINARY SEG naming no source image (no Derivation Image, no Referenced Series:
                       its frames placed by ImagePositionPatient in the CT's frame of reference only):
                       "Rein" (blue) on slice 3, rows and columns 16..31
  seg-fractional.dcm   FRACTIONAL SEG (8 bits, maximum 255), its frames naming their source image:
                       "Oedeme" (yellow) on slice 4, 200 in rows 16..31 and columns 16..23, 100 in
                       columns 24..31 (under 50 %: not drawn)
  seg-rle.dcm          FRACTIONAL SEG in RLE Lossless (compressed: its frames are decoded by the server),
                       naming its source image: "Kyste RLE" (magenta) on slice 3, rows and columns 40..47
  seg-orphan.dcm       BINARY SEG of images that are not in the study (another series, another
                       frame of reference)

Prints a JSON object: the UIDs the test needs.
"""
import json
import os
import sys

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

CT = '1.2.840.10008.5.1.4.1.1.2'
SEG = '1.2.840.10008.5.1.4.1.1.66.4'
out, patient_id, patient_name, study_uid = sys.argv[1:5]
ROWS = COLS = 64


def code(value, scheme, meaning):
    c = Dataset()
    c.CodeValue = value
    c.CodingSchemeDesignator = scheme
    c.CodeMeaning = meaning
    return c


def lab(rgb):
    """sRGB (0..255) to DICOM's scaled PCS-Lab (D50): sRGB → XYZ D65 → Bradford → D50 → Lab."""
    lin = [(c / 255 / 12.92) if c / 255 <= 0.04045 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
    x = 0.4124564 * lin[0] + 0.3575761 * lin[1] + 0.1804375 * lin[2]
    y = 0.2126729 * lin[0] + 0.7151522 * lin[1] + 0.0721750 * lin[2]
    z = 0.0193339 * lin[0] + 0.1191920 * lin[1] + 0.9503041 * lin[2]
    X = 1.0478112 * x + 0.0228866 * y - 0.0501270 * z
    Y = 0.0295424 * x + 0.9904844 * y - 0.0170491 * z
    Z = -0.0092345 * x + 0.0150436 * y + 0.7521316 * z
    f = [t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116 for t in (X / 0.96422, Y / 1.0, Z / 0.82521)]
    L, a, b = 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])
    clamp = lambda v: max(0, min(65535, round(v)))
    return [clamp(L * 65535 / 100), clamp((a + 128) * 65535 / 255), clamp((b + 128) * 65535 / 255)]


def common(ds, series_uid, modality, number, description):
    ds.SpecificCharacterSet = 'ISO_IR 192'
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.PatientBirthDate = '19600101'
    ds.PatientSex = 'F'
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = '20260410'
    ds.StudyTime = '101500'
    ds.StudyID = '1'
    ds.AccessionNumber = 'SEG-1'
    ds.ReferringPhysicianName = ''
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.SeriesNumber = number
    ds.SeriesDescription = description
    ds.Manufacturer = 'Atrium tests'


def save(ds, name, transfer_syntax=ExplicitVRLittleEndian):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta = meta
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    ds.save_as(os.path.join(out, name), write_like_original=False)


ct_series = generate_uid()
frame_of_reference = generate_uid()
cts = []
for z in range(4):
    ds = Dataset()
    common(ds, ct_series, 'CT', 1, 'Thorax')
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = generate_uid()
    ds.ImageType = ['ORIGINAL', 'PRIMARY', 'AXIAL']
    ds.InstanceNumber = z + 1
    ds.FrameOfReferenceUID = frame_of_reference
    ds.PositionReferenceIndicator = ''
    ds.ImagePositionPatient = [-32, -32, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [1, 1]
    ds.SliceThickness = 1
    ds.KVP = 120
    ds.AcquisitionNumber = 1
    ds.PatientPosition = 'HFS'
    ds.Laterality = ''
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = 'MONOCHROME2'
    ds.Rows = ROWS
    ds.Columns = COLS
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.WindowCenter = 0
    ds.WindowWidth = 1400
    pixels = bytearray()
    for r in range(ROWS):
        for c in range(COLS):
            v = 1724 if 16 <= r <= 31 and 16 <= c <= 31 else 24
            pixels += v.to_bytes(2, 'little')
    ds.PixelData = bytes(pixels)
    save(ds, f'ct-{z + 1}.dcm')
    cts.append(ds)


def segmentation(name, number, description, segments, frames, referenced_series, referenced, for_uid, with_sources, fractional=False, rle=False):
    """segments: [(label, rgb)]; frames: [(segment number, source SOP Instance UID or None, z, [((r0, r1, c0, c1), value)])]."""
    ds = Dataset()
    common(ds, generate_uid(), 'SEG', number, description)
    ds.SOPClassUID = SEG
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = 1
    ds.ContentDate = '20260410'
    ds.ContentTime = '110000'
    ds.ImageType = ['DERIVED', 'PRIMARY']
    ds.ContentLabel = 'SEGMENTATION'
    ds.ContentDescription = description
    ds.ContentCreatorName = 'Test^Atrium'
    ds.ManufacturerModelName = 'segmentation-objects.py'
    ds.DeviceSerialNumber = '1'
    ds.SoftwareVersions = '1'
    ds.FrameOfReferenceUID = for_uid
    ds.PositionReferenceIndicator = ''
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = 'MONOCHROME2'
    ds.Rows = ROWS
    ds.Columns = COLS
    ds.BitsAllocated = 8 if fractional else 1
    ds.BitsStored = 8 if fractional else 1
    ds.HighBit = 7 if fractional else 0
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = '00'
    ds.SegmentationType = 'FRACTIONAL' if fractional else 'BINARY'
    if fractional:
        ds.SegmentationFractionalType = 'PROBABILITY'
        ds.MaximumFractionalValue = 255
    items = []
    for i, (label, rgb) in enumerate(segments):
        s = Dataset()
        s.SegmentNumber = i + 1
        s.SegmentLabel = label
        s.SegmentAlgorithmType = 'MANUAL'
        s.SegmentedPropertyCategoryCodeSequence = Sequence([code('49755003', 'SCT', 'Morphologically Altered Structure')])
        s.SegmentedPropertyTypeCodeSequence = Sequence([code('4147007', 'SCT', 'Mass')])
        s.RecommendedDisplayCIELabValue = lab(rgb)
        items.append(s)
    ds.SegmentSequence = Sequence(items)
    dimension_uid = generate_uid()
    d1 = Dataset()
    d1.DimensionOrganizationUID = dimension_uid
    d1.DimensionIndexPointer = 0x0062000B
    d1.FunctionalGroupPointer = 0x0062000A
    d2 = Dataset()
    d2.DimensionOrganizationUID = dimension_uid
    d2.DimensionIndexPointer = 0x00200032
    d2.FunctionalGroupPointer = 0x00209113
    organisation = Dataset()
    organisation.DimensionOrganizationUID = dimension_uid
    ds.DimensionOrganizationSequence = Sequence([organisation])
    ds.DimensionIndexSequence = Sequence([d1, d2])
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [1, 1]
    measures.SliceThickness = 1
    shared.PixelMeasuresSequence = Sequence([measures])
    orientation = Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PlaneOrientationSequence = Sequence([orientation])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    bits = []
    for segment, source, z, regions in frames:
        f = Dataset()
        if with_sources:
            derivation = Dataset()
            derivation.DerivationCodeSequence = Sequence([code('113076', 'DCM', 'Segmentation')])
            src = Dataset()
            src.ReferencedSOPClassUID = CT
            src.ReferencedSOPInstanceUID = source
            src.PurposeOfReferenceCodeSequence = Sequence([code('121322', 'DCM', 'Source image for image processing operation')])
            derivation.SourceImageSequence = Sequence([src])
            f.DerivationImageSequence = Sequence([derivation])
        content = Dataset()
        content.DimensionIndexValues = [segment, z + 1]
        f.FrameContentSequence = Sequence([content])
        position = Dataset()
        position.ImagePositionPatient = [-32, -32, z]
        f.PlanePositionSequence = Sequence([position])
        identification = Dataset()
        identification.ReferencedSegmentNumber = segment
        f.SegmentIdentificationSequence = Sequence([identification])
        per_frame.append(f)
        bits += [next((v for (r0, r1, c0, c1), v in regions if r0 <= r <= r1 and c0 <= c <= c1), 0) for r in range(ROWS) for c in range(COLS)]
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.NumberOfFrames = len(frames)
    if fractional:
        packed = bytearray(bits)
    else:
        packed = bytearray((len(bits) + 7) // 8)
        for i, b in enumerate(bits):
            if b:
                packed[i >> 3] |= 1 << (i & 7)
    if rle:
        # RLE Lossless (PS3.5 G): one segment a frame (8-bit samples), each row one literal run of 64 bytes.
        frame_bytes = ROWS * COLS
        encoded = []
        for f in range(len(frames)):
            body = b''.join(bytes([COLS - 1]) + bytes(packed[f * frame_bytes + r * COLS:f * frame_bytes + (r + 1) * COLS]) for r in range(ROWS))
            encoded.append((1).to_bytes(4, 'little') + (64).to_bytes(4, 'little') + bytes(56) + body)
        ds.PixelData = encapsulate(encoded)
        ds['PixelData'].VR = 'OB'
        ds['PixelData'].is_undefined_length = True
    else:
        if len(packed) % 2:
            packed.append(0)
        ds.PixelData = bytes(packed)
        ds['PixelData'].VR = 'OB'
    transfer_syntax = RLELossless if rle else ExplicitVRLittleEndian
    if referenced_series is None:  # no source image named: no instance referenced either
        save(ds, name, transfer_syntax)
        return ds
    series = Dataset()
    series.SeriesInstanceUID = referenced_series
    refs = []
    for sop in referenced:
        r = Dataset()
        r.ReferencedSOPClassUID = CT
        r.ReferencedSOPInstanceUID = sop
        refs.append(r)
    series.ReferencedInstanceSequence = Sequence(refs)
    ds.ReferencedSeriesSequence = Sequence([series])
    save(ds, name, transfer_syntax)
    return ds


red, green, blue = (255, 0, 0), (0, 255, 0), (0, 0, 255)
seg = segmentation('seg.dcm', 10, 'Lésions', [('Nodule', red), ('Kyste', green)],
                   [(1, cts[1].SOPInstanceUID, 1, [((16, 31, 16, 31), 1)]), (2, cts[1].SOPInstanceUID, 1, [((40, 47, 40, 47), 1)])],
                   ct_series, [cts[1].SOPInstanceUID], frame_of_reference, True)
by_position = segmentation('seg-positions.dcm', 11, 'Rein', [('Rein', blue)], [(1, None, 2, [((16, 31, 16, 31), 1)])],
                           None, [], frame_of_reference, False)
fractional = segmentation('seg-fractional.dcm', 13, 'Oedeme', [('Oedeme', (255, 255, 0))],
                          [(1, cts[3].SOPInstanceUID, 3, [((16, 31, 16, 23), 200), ((16, 31, 24, 31), 100)])],
                          ct_series, [cts[3].SOPInstanceUID], frame_of_reference, True, fractional=True)
rle = segmentation('seg-rle.dcm', 14, 'Kyste RLE', [('Kyste RLE', (255, 0, 255))],
                   [(1, cts[2].SOPInstanceUID, 2, [((40, 47, 40, 47), 255)])],
                   ct_series, [cts[2].SOPInstanceUID], frame_of_reference, True, fractional=True, rle=True)
elsewhere = [generate_uid(), generate_uid()]
orphan = segmentation('seg-orphan.dcm', 12, 'Ailleurs', [('Ailleurs', red)], [(1, elsewhere[1], 0, [((0, 7, 0, 7), 1)])],
                      elsewhere[0], [elsewhere[1]], generate_uid(), True)
print(json.dumps({
    'ctSeries': ct_series, 'ct': [d.SOPInstanceUID for d in cts],
    'seg': seg.SOPInstanceUID, 'segSeries': seg.SeriesInstanceUID,
    'segPositions': by_position.SOPInstanceUID, 'segPositionsSeries': by_position.SeriesInstanceUID,
    'segOrphan': orphan.SOPInstanceUID, 'segOrphanSeries': orphan.SeriesInstanceUID,
}))
