"""PALETTE COLOR test images written with pydicom (test/rendering.test.ts): argv[1] the folder.

  palette-8bit.dcm       8-bit indices, 256-entry tables of 16-bit entries
  palette-16bit.dcm      12-bit indices in 16 bits, 1024-entry tables starting at value 100
                         (values below and above the tables clamp to their ends)
  palette-segmented.dcm  8-bit indices, segmented tables (discrete and linear segments)
  palette-segmented-expanded.dcm  the same, its tables expanded (plain)
"""
import sys
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid, SecondaryCaptureImageStorage

out = sys.argv[1]


def image(name, rows, cols, bits, stored, pixels, luts):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = 'PALETTE-1'
    ds.PatientName = 'PALETTE^Test'
    ds.Modality = 'OT'
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = 'PALETTE COLOR'
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = bits
    ds.BitsStored = stored
    ds.HighBit = stored - 1
    ds.PixelRepresentation = 0
    for key, value in luts.items():
        setattr(ds, key, value)
    if bits == 8:
        ds.PixelData = bytes(pixels)
    else:
        ds.PixelData = b''.join(v.to_bytes(2, 'little') for v in pixels)
    ds['PixelData'].VR = 'OB' if bits == 8 else 'OW'
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    ds.save_as(f'{out}/{name}', write_like_original=False)


def words(values):
    return b''.join(int(v).to_bytes(2, 'little') for v in values)


rows, cols = 48, 64
ramp8 = [(r * cols + c) % 256 for r in range(rows) for c in range(cols)]
red = [min(65535, i * 257) for i in range(256)]
green = [65535 - i * 257 for i in range(256)]
blue = [(i * 97 % 256) * 257 for i in range(256)]
image('palette-8bit.dcm', rows, cols, 8, 8, ramp8, {
    'RedPaletteColorLookupTableDescriptor': [256, 0, 16],
    'GreenPaletteColorLookupTableDescriptor': [256, 0, 16],
    'BluePaletteColorLookupTableDescriptor': [256, 0, 16],
    'RedPaletteColorLookupTableData': words(red),
    'GreenPaletteColorLookupTableData': words(green),
    'BluePaletteColorLookupTableData': words(blue),
})

ramp12 = [(r * cols + c) * 2 % 1300 for r in range(rows) for c in range(cols)]
n = 1024
image('palette-16bit.dcm', rows, cols, 16, 12, ramp12, {
    'RedPaletteColorLookupTableDescriptor': [n, 100, 16],
    'GreenPaletteColorLookupTableDescriptor': [n, 100, 16],
    'BluePaletteColorLookupTableDescriptor': [n, 100, 16],
    'RedPaletteColorLookupTableData': words([i * 64 for i in range(n)]),
    'GreenPaletteColorLookupTableData': words([(n - 1 - i) * 64 for i in range(n)]),
    'BluePaletteColorLookupTableData': words([(i * 37 % n) * 64 for i in range(n)]),
})

# Segmented: discrete then linear segments (PS3.3 C.7.9.2), 256 entries each; and the same
# tables expanded, as plain tables, for a reference tool that reads no segmented palette.
segments = {
    'Red': [0, 1, 0, 1, 127, 65535, 1, 128, 0],
    'Green': [0, 1, 65535, 1, 255, 0],
    'Blue': [0, 4, 0, 16384, 32768, 49152, 1, 252, 65535],
}


def expand(data):
    """A linear segment runs from the previous value (left out) to its end value (included)."""
    out, i = [], 0
    while i < len(data):
        op, length = data[i], data[i + 1]
        if op == 0:
            out += data[i + 2:i + 2 + length]
            i += 2 + length
        else:
            y0, y1 = out[-1], data[i + 2]
            out += [int(y0 + (y1 - y0) * k / length + 0.5) for k in range(1, length + 1)]
            i += 3
    return out


descriptors = {f'{c}PaletteColorLookupTableDescriptor': [256, 0, 16] for c in segments}
image('palette-segmented.dcm', rows, cols, 8, 8, ramp8, {
    **descriptors, **{f'Segmented{c}PaletteColorLookupTableData': words(d) for c, d in segments.items()},
})
image('palette-segmented-expanded.dcm', rows, cols, 8, 8, ramp8, {
    **descriptors, **{f'{c}PaletteColorLookupTableData': words(expand(d)) for c, d in segments.items()},
})
