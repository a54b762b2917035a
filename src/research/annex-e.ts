/**
 * PS3.15 Annex E, Table E.1-1 (Application Level Confidentiality Profile Attributes), as
 * Atrium applies it: for each attribute, its action in the Basic Profile and the action each
 * option gives instead. Transcribed from the DICOM standard's table (release 2025a), one line
 * per attribute, in tag order:
 *
 *   <tag> <basic action> [<option>=<action> ...] | <attribute name>
 *
 * Actions (E.1.1): D a dummy value of the VR, Z zero length (or a dummy), X removed, K kept,
 * C cleaned (same meaning, identifying text removed; dates shifted), U a UID replaced
 * consistently; "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*" leave the choice to the application
 * (resolveAction says which Atrium makes). Options (Table E.1-1 columns):
 *   private            Retain Safe Private
 *   uids               Retain UIDs
 *   device             Retain Device Identity
 *   institution        Retain Institution Identity
 *   patient            Retain Patient Characteristics
 *   fullDates          Retain Longitudinal Temporal Information, Full Dates
 *   modifiedDates      Retain Longitudinal Temporal Information, Modified Dates
 *   descriptors        Clean Descriptors
 *   structuredContent  Clean Structured Content
 *   graphics           Clean Graphics
 * Tags with "X" for a hex digit stand for repeating groups: 50XXXXXX curve data, 60XX overlays;
 * ODDGROUP stands for every private attribute (odd group).
 */
import type { Tag } from '../dicom/dataset.ts';

export type ProfileOption =
  | 'private' | 'uids' | 'device' | 'institution' | 'patient' | 'fullDates' | 'modifiedDates'
  | 'descriptors' | 'structuredContent' | 'graphics';

export const profileOptions: readonly ProfileOption[] = [
  'private', 'uids', 'device', 'institution', 'patient', 'fullDates', 'modifiedDates', 'descriptors', 'structuredContent', 'graphics',
];

export type BasicAction = 'D' | 'Z' | 'X' | 'K' | 'C' | 'U' | 'X/Z' | 'X/D' | 'Z/D' | 'X/Z/D' | 'X/Z/U*';
export type OptionAction = 'K' | 'C';

export interface ProfileAttribute {
  /** "GGGGEEEE", upper case; "X" digits in the repeating-group entries; "ODDGROUP" for private attributes. */
  tag: string;
  name: string;
  basic: BasicAction;
  options: Partial<Record<ProfileOption, OptionAction>>;
}

const table = `
00001000 X uids=K | Affected SOP Instance UID
00001001 U uids=K | Requested SOP Instance UID
00020003 U uids=K | Media Storage SOP Instance UID
00041511 U uids=K | Referenced SOP Instance UID in File
00080012 X/D fullDates=K modifiedDates=C | Instance Creation Date
00080013 X/Z/D fullDates=K modifiedDates=C | Instance Creation Time
00080014 U uids=K | Instance Creator UID
00080015 X fullDates=K modifiedDates=C | Instance Coercion DateTime
00080017 U uids=K | Acquisition UID
00080018 U uids=K | SOP Instance UID
00080019 U uids=K | Pyramid UID
00080020 Z fullDates=K modifiedDates=C | Study Date
00080021 X/D fullDates=K modifiedDates=C | Series Date
00080022 X/Z fullDates=K modifiedDates=C | Acquisition Date
00080023 Z/D fullDates=K modifiedDates=C | Content Date
00080024 X fullDates=K modifiedDates=C | Overlay Date
00080025 X fullDates=K modifiedDates=C | Curve Date
0008002A X/Z/D fullDates=K modifiedDates=C | Acquisition DateTime
00080030 Z fullDates=K modifiedDates=C | Study Time
00080031 X/D fullDates=K modifiedDates=C | Series Time
00080032 X/Z fullDates=K modifiedDates=C | Acquisition Time
00080033 Z/D fullDates=K modifiedDates=C | Content Time
00080034 X fullDates=K modifiedDates=C | Overlay Time
00080035 X fullDates=K modifiedDates=C | Curve Time
00080050 Z | Accession Number
00080054 X device=C | Retrieve AE Title
00080055 X device=C | Station AE Title
00080058 U uids=K | Failed SOP Instance UID List
00080080 X/Z/D institution=K | Institution Name
00080081 X institution=K | Institution Address
00080082 X/Z/D institution=K | Institution Code Sequence
00080090 Z | Referring Physician's Name
00080092 X | Referring Physician's Address
00080094 X | Referring Physician's Telephone Numbers
00080096 X | Referring Physician Identification Sequence
0008009C Z | Consulting Physician's Name
0008009D X | Consulting Physician Identification Sequence
00080106 D fullDates=K modifiedDates=C | Context Group Version
00080107 D fullDates=K modifiedDates=C | Context Group Local Version
00080201 X fullDates=K modifiedDates=C | Timezone Offset From UTC
00081000 X device=C | Network ID
00081010 X/Z/D device=K | Station Name
00081030 X descriptors=C | Study Description
0008103E X descriptors=C | Series Description
00081040 X institution=K | Institutional Department Name
00081041 X institution=K | Institutional Department Type Code Sequence
00081048 X | Physician(s) of Record
00081049 X | Physician(s) of Record Identification Sequence
00081050 X | Performing Physician's Name
00081052 X | Performing Physician Identification Sequence
00081060 X | Name of Physician(s) Reading Study
00081062 X | Physician(s) Reading Study Identification Sequence
00081070 X/Z/D | Operators' Name
00081072 X/D | Operator Identification Sequence
00081080 X descriptors=C | Admitting Diagnoses Description
00081084 X descriptors=C | Admitting Diagnoses Code Sequence
00081088 X descriptors=C | Pyramid Description
00081110 X/Z uids=K | Referenced Study Sequence
00081111 X/Z/D uids=K | Referenced Performed Procedure Step Sequence
00081120 X uids=K | Referenced Patient Sequence
00081140 X/Z/U* uids=K | Referenced Image Sequence
00081155 U uids=K | Referenced SOP Instance UID
00081195 U uids=K | Transaction UID
00082111 X descriptors=C | Derivation Description
00082112 X/Z/U* uids=K | Source Image Sequence
00083010 U uids=K | Irradiation Event UID
00084000 X descriptors=C | Identifying Comments
00100010 Z | Patient's Name
00100020 Z/D | Patient ID
00100021 X | Issuer of Patient ID
00100030 Z | Patient's Birth Date
00100032 X | Patient's Birth Time
00100040 Z patient=K | Patient's Sex
00100050 X | Patient's Insurance Plan Code Sequence
00100101 X | Patient's Primary Language Code Sequence
00100102 X | Patient's Primary Language Modifier Code Sequence
00101000 X | Other Patient IDs
00101001 X | Other Patient Names
00101002 X | Other Patient IDs Sequence
00101005 X | Patient's Birth Name
00101010 X patient=K | Patient's Age
00101020 X patient=K | Patient's Size
00101030 X patient=K | Patient's Weight
00101040 X | Patient's Address
00101050 X | Insurance Plan Identification
00101060 X | Patient's Mother's Birth Name
00101080 X | Military Rank
00101081 X | Branch of Service
00101090 X | Medical Record Locator
00101100 X | Referenced Patient Photo Sequence
00102000 X descriptors=C | Medical Alerts
00102110 X patient=C descriptors=C | Allergies
00102150 X | Country of Residence
00102152 X | Region of Residence
00102154 X | Patient's Telephone Numbers
00102155 X | Patient's Telecom Information
00102160 X patient=K | Ethnic Group
00102180 X descriptors=C | Occupation
001021A0 X patient=K | Smoking Status
001021B0 X descriptors=C | Additional Patient History
001021C0 X patient=K | Pregnancy Status
001021D0 X fullDates=K modifiedDates=C | Last Menstrual Date
001021F0 X | Patient's Religious Preference
00102203 X/Z patient=K | Patient's Sex Neutered
00102297 X | Responsible Person
00102299 X | Responsible Organization
00104000 X descriptors=C | Patient Comments
00120010 D | Clinical Trial Sponsor Name
00120020 D | Clinical Trial Protocol ID
00120021 Z | Clinical Trial Protocol Name
00120022 X | Issuer of Clinical Trial Protocol ID
00120023 X | Other Clinical Trial Protocol IDs Sequence
00120030 Z institution=K | Clinical Trial Site ID
00120031 Z institution=K | Clinical Trial Site Name
00120032 X | Issuer of Clinical Trial Site ID
00120040 D | Clinical Trial Subject ID
00120041 X | Issuer of Clinical Trial Subject ID
00120042 D | Clinical Trial Subject Reading ID
00120043 X | Issuer of Clinical Trial Subject Reading ID
00120050 Z | Clinical Trial Time Point ID
00120051 X descriptors=C | Clinical Trial Time Point Description
00120055 X | Issuer of Clinical Trial Time Point ID
00120060 Z institution=K | Clinical Trial Coordinating Center Name
00120071 X | Clinical Trial Series ID
00120072 X descriptors=C | Clinical Trial Series Description
00120073 X | Issuer of Clinical Trial Series ID
00120081 D institution=K | Clinical Trial Protocol Ethics Committee Name
00120082 X | Clinical Trial Protocol Ethics Committee Approval Number
00120086 X fullDates=K modifiedDates=C | Ethics Committee Approval Effectiveness Start Date
00120087 X fullDates=K modifiedDates=C | Ethics Committee Approval Effectiveness End Date
0014407C X device=K fullDates=K modifiedDates=C | Calibration Time
0014407E X device=K fullDates=K modifiedDates=C | Calibration Date
0016002B X descriptors=C | Maker Note
0016004B X descriptors=C | Device Setting Description
0016004D X | Camera Owner Name
0016004E X device=K | Lens Specification
0016004F X device=K | Lens Make
00160050 X device=K | Lens Model
00160051 X device=K | Lens Serial Number
00160070 X | GPS Version ID
00160071 X | GPS Latitude Ref
00160072 X | GPS Latitude
00160073 X | GPS Longitude Ref
00160074 X | GPS Longitude
00160075 X | GPS Altitude Ref
00160076 X | GPS Altitude
00160077 X | GPS Time Stamp
00160078 X | GPS Satellites
00160079 X | GPS Status
0016007A X | GPS Measure Mode
0016007B X | GPS DOP
0016007C X | GPS Speed Ref
0016007D X | GPS Speed
0016007E X | GPS Track Ref
0016007F X | GPS Track
00160080 X | GPS Img Direction Ref
00160081 X | GPS Img Direction
00160082 X | GPS Map Datum
00160083 X | GPS Dest Latitude Ref
00160084 X | GPS Dest Latitude
00160085 X | GPS Dest Longitude Ref
00160086 X | GPS Dest Longitude
00160087 X | GPS Dest Bearing Ref
00160088 X | GPS Dest Bearing
00160089 X | GPS Dest Distance Ref
0016008A X | GPS Dest Distance
0016008B X | GPS Processing Method
0016008C X | GPS Area Information
0016008D X fullDates=K modifiedDates=C | GPS Date Stamp
0016008E X | GPS Differential
00180010 Z/D descriptors=C | Contrast/Bolus Agent
00180027 X fullDates=K modifiedDates=C | Intervention Drug Stop Time
00180035 X fullDates=K modifiedDates=C | Intervention Drug Start Time
00181000 X/Z/D device=K | Device Serial Number
00181002 U uids=K device=K | Device UID
00181004 X device=K | Plate ID
00181005 X device=K | Generator ID
00181007 X device=K | Cassette ID
00181008 X device=K | Gantry ID
00181009 X device=K | Unique Device Identifier
0018100A X device=K | UDI Sequence
0018100B U uids=K device=K | Manufacturer's Device Class UID
00181012 X fullDates=K modifiedDates=C | Date of Secondary Capture
00181014 X fullDates=K modifiedDates=C | Time of Secondary Capture
00181030 X/D descriptors=C | Protocol Name
00181042 X fullDates=K modifiedDates=C | Contrast/Bolus Start Time
00181043 X fullDates=K modifiedDates=C | Contrast/Bolus Stop Time
00181072 X fullDates=K modifiedDates=C | Radiopharmaceutical Start Time
00181073 X fullDates=K modifiedDates=C | Radiopharmaceutical Stop Time
00181078 X fullDates=K modifiedDates=C | Radiopharmaceutical Start DateTime
00181079 X fullDates=K modifiedDates=C | Radiopharmaceutical Stop DateTime
001811BB D descriptors=C | Acquisition Field Of View Label
00181200 X device=K fullDates=K modifiedDates=C | Date of Last Calibration
00181201 X device=K fullDates=K modifiedDates=C | Time of Last Calibration
00181202 X device=K fullDates=K modifiedDates=C | DateTime of Last Calibration
00181203 Z device=K fullDates=K modifiedDates=C | Calibration DateTime
00181204 X device=K fullDates=K modifiedDates=C | Date of Manufacture
00181205 X device=K fullDates=K modifiedDates=C | Date of Installation
00181400 X/D descriptors=C | Acquisition Device Processing Description
00182042 U uids=K | Target UID
00184000 X descriptors=C | Acquisition Comments
00185011 X device=K | Transducer Identification Sequence
0018700A X/D device=K | Detector ID
0018700C X/D device=K fullDates=K modifiedDates=C | Date of Last Detector Calibration
0018700E X/D device=K fullDates=K modifiedDates=C | Time of Last Detector Calibration
00189074 D fullDates=K modifiedDates=C | Frame Acquisition DateTime
00189151 D fullDates=K modifiedDates=C | Frame Reference DateTime
00189185 X descriptors=C | Respiratory Motion Compensation Technique Description
00189367 D device=K | X-Ray Source ID
00189369 D fullDates=K modifiedDates=C | Source Start DateTime
0018936A D fullDates=K modifiedDates=C | Source End DateTime
00189371 D device=K | X-Ray Detector ID
00189373 X device=K | X-Ray Detector Label
0018937B X descriptors=C | Multi-energy Acquisition Description
0018937F X descriptors=C | Decomposition Description
00189424 X descriptors=C | Acquisition Protocol Description
00189516 X/D fullDates=K modifiedDates=C | Start Acquisition DateTime
00189517 X/D fullDates=K modifiedDates=C | End Acquisition DateTime
00189623 D fullDates=K modifiedDates=C | Functional Sync Pulse
00189701 D fullDates=K modifiedDates=C | Decay Correction DateTime
00189804 D fullDates=K modifiedDates=C | Exclusion Start DateTime
00189919 Z/D fullDates=K modifiedDates=C | Instruction Performed DateTime
00189937 X descriptors=C | Requested Series Description
0018A002 X fullDates=K modifiedDates=C | Contribution DateTime
0018A003 X descriptors=C | Contribution Description
0020000D U uids=K | Study Instance UID
0020000E U uids=K | Series Instance UID
00200010 Z | Study ID
00200027 X descriptors=C | Pyramid Label
00200052 U uids=K | Frame of Reference UID
00200200 U uids=K | Synchronization Frame of Reference UID
00203401 X device=K | Modifying Device ID
00203403 X fullDates=K modifiedDates=C | Modified Image Date
00203405 X fullDates=K modifiedDates=C | Modified Image Time
00203406 X | Modified Image Description
00204000 X descriptors=C | Image Comments
00209158 X descriptors=C | Frame Comments
00209161 U uids=K | Concatenation UID
00209164 U uids=K | Dimension Organization UID
00281199 U uids=K | Palette Color Lookup Table UID
00281214 U uids=K | Large Palette Color Lookup Table UID
00284000 X | Image Presentation Comments
00320012 X | Study ID Issuer
00320032 X fullDates=K modifiedDates=C | Study Verified Date
00320033 X fullDates=K modifiedDates=C | Study Verified Time
00320034 X fullDates=K modifiedDates=C | Study Read Date
00320035 X fullDates=K modifiedDates=C | Study Read Time
00321000 X fullDates=K modifiedDates=C | Scheduled Study Start Date
00321001 X fullDates=K modifiedDates=C | Scheduled Study Start Time
00321010 X fullDates=K modifiedDates=C | Scheduled Study Stop Date
00321011 X fullDates=K modifiedDates=C | Scheduled Study Stop Time
00321020 X device=K | Scheduled Study Location
00321021 X device=C | Scheduled Study Location AE Title
00321030 X descriptors=C | Reason for Study
00321032 X | Requesting Physician
00321033 X | Requesting Service
00321040 X fullDates=K modifiedDates=C | Study Arrival Date
00321041 X fullDates=K modifiedDates=C | Study Arrival Time
00321050 X fullDates=K modifiedDates=C | Study Completion Date
00321051 X fullDates=K modifiedDates=C | Study Completion Time
00321060 X/Z descriptors=C | Requested Procedure Description
00321066 X descriptors=C | Reason for Visit
00321067 X descriptors=C | Reason for Visit Code Sequence
00321070 X descriptors=C | Requested Contrast Agent
00324000 X descriptors=C | Study Comments
00340001 D | Flow Identifier Sequence
00340002 D | Flow Identifier
00340005 D | Source Identifier
00340007 D fullDates=K modifiedDates=C | Frame Origin Timestamp
00380004 X | Referenced Patient Alias Sequence
00380010 X | Admission ID
00380011 X | Issuer of Admission ID
00380014 X | Issuer of Admission ID Sequence
0038001A X fullDates=K modifiedDates=C | Scheduled Admission Date
0038001B X fullDates=K modifiedDates=C | Scheduled Admission Time
0038001C X fullDates=K modifiedDates=C | Scheduled Discharge Date
0038001D X fullDates=K modifiedDates=C | Scheduled Discharge Time
0038001E X | Scheduled Patient Institution Residence
00380020 X fullDates=K modifiedDates=C | Admitting Date
00380021 X fullDates=K modifiedDates=C | Admitting Time
00380030 X fullDates=K modifiedDates=C | Discharge Date
00380032 X fullDates=K modifiedDates=C | Discharge Time
00380040 X descriptors=C | Discharge Diagnosis Description
00380050 X patient=C | Special Needs
00380060 X | Service Episode ID
00380061 X | Issuer of Service Episode ID
00380062 X descriptors=C | Service Episode Description
00380064 X | Issuer of Service Episode ID Sequence
00380300 X | Current Patient Location
00380400 X | Patient's Institution Residence
00380500 X patient=C descriptors=C | Patient State
00384000 X descriptors=C | Visit Comments
003A0310 U uids=K | Multiplex Group UID
003A0314 D fullDates=K modifiedDates=C | Impedance Measurement DateTime
003A0329 X descriptors=C | Waveform Filter Description
003A032B X descriptors=C | Filter Lookup Table Description
00400001 X device=C | Scheduled Station AE Title
00400002 X fullDates=K modifiedDates=C | Scheduled Procedure Step Start Date
00400003 X fullDates=K modifiedDates=C | Scheduled Procedure Step Start Time
00400004 X fullDates=K modifiedDates=C | Scheduled Procedure Step End Date
00400005 X fullDates=K modifiedDates=C | Scheduled Procedure Step End Time
00400006 X | Scheduled Performing Physician's Name
00400007 X descriptors=C | Scheduled Procedure Step Description
00400009 X | Scheduled Procedure Step ID
0040000B X | Scheduled Performing Physician Identification Sequence
00400010 X device=K | Scheduled Station Name
00400011 X device=K | Scheduled Procedure Step Location
00400012 X patient=C | Pre-Medication
00400241 X device=C | Performed Station AE Title
00400242 X device=K | Performed Station Name
00400243 X | Performed Location
00400244 X fullDates=K modifiedDates=C | Performed Procedure Step Start Date
00400245 X fullDates=K modifiedDates=C | Performed Procedure Step Start Time
00400250 X fullDates=K modifiedDates=C | Performed Procedure Step End Date
00400251 X fullDates=K modifiedDates=C | Performed Procedure Step End Time
00400253 X | Performed Procedure Step ID
00400254 X descriptors=C | Performed Procedure Step Description
00400275 X descriptors=C | Request Attributes Sequence
00400280 X descriptors=C | Comments on the Performed Procedure Step
00400310 X descriptors=C | Comments on Radiation Dose
0040050A X | Specimen Accession Number
00400512 D | Container Identifier
00400513 Z | Issuer of the Container Identifier Sequence
0040051A X descriptors=C | Container Description
00400551 D | Specimen Identifier
00400554 U uids=K | Specimen UID
00400555 X/Z structuredContent=C | Acquisition Context Sequence
00400562 Z | Issuer of the Specimen Identifier Sequence
00400600 X descriptors=C | Specimen Short Description
00400602 X descriptors=C | Specimen Detailed Description
00400610 Z structuredContent=C | Specimen Preparation Sequence
004006FA X | Slide Identifier
00401001 X | Requested Procedure ID
00401002 X descriptors=C | Reason for the Requested Procedure
00401004 X | Patient Transport Arrangements
00401005 X | Requested Procedure Location
0040100A X descriptors=C | Reason for Requested Procedure Code Sequence
00401010 X | Names of Intended Recipients of Results
00401011 X | Intended Recipients of Results Identification Sequence
00401101 D | Person Identification Code Sequence
00401102 X | Person's Address
00401103 X | Person's Telephone Numbers
00401104 X | Person's Telecom Information
00401400 X descriptors=C | Requested Procedure Comments
00402001 X descriptors=C | Reason for the Imaging Service Request
00402004 X fullDates=K modifiedDates=C | Issue Date of Imaging Service Request
00402005 X fullDates=K modifiedDates=C | Issue Time of Imaging Service Request
00402008 X | Order Entered By
00402009 X | Order Enterer's Location
00402010 X | Order Callback Phone Number
00402011 X | Order Callback Telecom Information
00402016 Z | Placer Order Number / Imaging Service Request
00402017 Z | Filler Order Number / Imaging Service Request
00402400 X descriptors=C | Imaging Service Request Comments
00403001 X | Confidentiality Constraint on Patient Data Description
00404005 X fullDates=K modifiedDates=C | Scheduled Procedure Step Start DateTime
00404008 X fullDates=K modifiedDates=C | Scheduled Procedure Step Expiration DateTime
00404010 X fullDates=K modifiedDates=C | Scheduled Procedure Step Modification DateTime
00404011 X fullDates=K modifiedDates=C | Expected Completion DateTime
00404023 U uids=K | Referenced General Purpose Scheduled Procedure Step Transaction UID
00404025 X device=K | Scheduled Station Name Code Sequence
00404027 X device=K | Scheduled Station Geographic Location Code Sequence
00404028 X device=K | Performed Station Name Code Sequence
00404030 X device=K | Performed Station Geographic Location Code Sequence
00404034 X | Scheduled Human Performers Sequence
00404035 X | Actual Human Performers Sequence
00404036 X | Human Performer's Organization
00404037 X | Human Performer's Name
00404050 X fullDates=K modifiedDates=C | Performed Procedure Step Start DateTime
00404051 X fullDates=K modifiedDates=C | Performed Procedure Step End DateTime
00404052 X fullDates=K modifiedDates=C | Procedure Step Cancellation DateTime
0040A023 X fullDates=K modifiedDates=C | Findings Group Recording Date (Trial)
0040A024 X fullDates=K modifiedDates=C | Findings Group Recording Time (Trial)
0040A027 D | Verifying Organization
0040A030 D fullDates=K modifiedDates=C | Verification DateTime
0040A032 X/D fullDates=K modifiedDates=C | Observation DateTime
0040A033 X fullDates=K modifiedDates=C | Observation Start DateTime
0040A073 D | Verifying Observer Sequence
0040A075 D | Verifying Observer Name
0040A078 X | Author Observer Sequence
0040A07A X | Participant Sequence
0040A07C X | Custodial Organization Sequence
0040A082 Z fullDates=K modifiedDates=C | Participation DateTime
0040A088 Z | Verifying Observer Identification Code Sequence
0040A110 X fullDates=K modifiedDates=C | Date of Document or Verbal Transaction (Trial)
0040A112 X fullDates=K modifiedDates=C | Time of Document Creation or Verbal Transaction (Trial)
0040A120 D fullDates=K modifiedDates=C | DateTime
0040A121 D fullDates=K modifiedDates=C | Date
0040A122 D fullDates=K modifiedDates=C | Time
0040A123 D | Person Name
0040A124 U | UID
0040A13A D fullDates=K modifiedDates=C | Referenced DateTime
0040A171 U uids=K | Observation UID
0040A172 U uids=K | Referenced Observation UID (Trial)
0040A192 X fullDates=K modifiedDates=C | Observation Date (Trial)
0040A193 X fullDates=K modifiedDates=C | Observation Time (Trial)
0040A307 X | Current Observer (Trial)
0040A352 X | Verbal Source (Trial)
0040A353 X | Address (Trial)
0040A354 X | Telephone Number (Trial)
0040A358 X | Verbal Source Identifier Code Sequence (Trial)
0040A402 U uids=K | Observation Subject UID (Trial)
0040A730 D structuredContent=C | Content Sequence
0040DB06 X fullDates=K modifiedDates=C | Template Version
0040DB07 X fullDates=K modifiedDates=C | Template Local Version
0040DB0C U uids=K | Template Extension Organization UID
0040DB0D U uids=K | Template Extension Creator UID
0040E004 X fullDates=K modifiedDates=C | HL7 Document Effective Time
00420011 D | Encapsulated Document
00440004 X fullDates=K modifiedDates=C | Approval Status DateTime
0044000B X fullDates=K modifiedDates=C | Product Expiration DateTime
00440010 X fullDates=K modifiedDates=C | Substance Administration DateTime
00440104 D fullDates=K modifiedDates=C | Assertion DateTime
00440105 X fullDates=K modifiedDates=C | Assertion Expiration DateTime
0050001B X | Container Component ID
00500020 X device=K | Device Description
00500021 X descriptors=C | Long Device Description
00620021 U uids=K | Tracking UID
00640003 U uids=K | Source Frame of Reference UID
00686226 D fullDates=K modifiedDates=C | Effective DateTime
00686270 D fullDates=K modifiedDates=C | Information Issue DateTime
006A0003 D uids=K | Annotation Group UID
006A0005 D descriptors=C | Annotation Group Label
006A0006 X descriptors=C | Annotation Group Description
00700001 D graphics=C | Graphic Annotation Sequence
00700082 X fullDates=K modifiedDates=C | Presentation Creation Date
00700083 X fullDates=K modifiedDates=C | Presentation Creation Time
00700084 Z/D | Content Creator's Name
00700086 X | Content Creator's Identification Code Sequence
0070031A U uids=K | Fiducial UID
00701101 U uids=K | Presentation Display Collection UID
00701102 U uids=K | Presentation Sequence Collection UID
0072000A D fullDates=K modifiedDates=C | Hanging Protocol Creation DateTime
0072005E D device=C | Selector AE Value
0072005F D patient=K | Selector AS Value
00720061 D fullDates=K modifiedDates=C | Selector DA Value
00720063 D fullDates=K modifiedDates=C | Selector DT Value
00720065 D | Selector OB Value
00720066 D descriptors=C | Selector LO Value
00720068 D descriptors=C | Selector LT Value
0072006A D | Selector PN Value
0072006B D fullDates=K modifiedDates=C | Selector TM Value
0072006C D descriptors=C | Selector SH Value
0072006D D | Selector UN Value
0072006E D descriptors=C | Selector ST Value
00720070 D descriptors=C | Selector UT Value
00720071 D | Selector UR Value
00741234 X device=C | Receiving AE
00741236 X device=C | Requesting AE
00880140 U uids=K | Storage Media File-set UID
00880200 X | Icon Image Sequence (see Note 11)
00880904 X | Topic Title
00880906 X | Topic Subject
00880910 X | Topic Author
00880912 X | Topic Keywords
01000420 X fullDates=K modifiedDates=C | SOP Authorization DateTime
04000100 U | Digital Signature UID
04000105 D fullDates=K modifiedDates=C | Digital Signature DateTime
04000115 D | Certificate of Signer
04000310 X fullDates=K modifiedDates=C | Certified Timestamp
04000402 X | Referenced Digital Signature Sequence
04000403 X | Referenced SOP Instance MAC Sequence
04000404 X | MAC
04000550 X | Modified Attributes Sequence
04000551 X | Nonconforming Modified Attributes Sequence
04000552 X | Nonconforming Data Element Value
04000561 X | Original Attributes Sequence
04000562 D fullDates=K modifiedDates=C | Attribute Modification DateTime
04000563 D device=K | Modifying System
04000564 Z institution=K | Source of Previous Values
04000565 D descriptors=C | Reason for the Attribute Modification
04000600 X | Instance Origin Status
20300020 X | Text String
21000040 X fullDates=K modifiedDates=C | Creation Date
21000050 X fullDates=K modifiedDates=C | Creation Time
21000070 X device=C | Originator
21000140 D device=C | Destination AE
22000002 X/Z descriptors=C | Label Text
22000005 X/Z | Barcode Value
30020121 X descriptors=C | Position Acquisition Template Name
30020123 X descriptors=C | Position Acquisition Template Description
30060002 D descriptors=C | Structure Set Label
30060004 X descriptors=C | Structure Set Name
30060006 X descriptors=C | Structure Set Description
30060008 Z fullDates=K modifiedDates=C | Structure Set Date
30060009 Z fullDates=K modifiedDates=C | Structure Set Time
30060024 U uids=K | Referenced Frame of Reference UID
30060026 Z descriptors=C | ROI Name
30060028 X descriptors=C | ROI Description
3006002D X fullDates=K modifiedDates=C | ROI DateTime
3006002E X fullDates=K modifiedDates=C | ROI Observation DateTime
30060038 X descriptors=C | ROI Generation Description
3006004D X | ROI Creator Sequence
3006004E X | ROI Interpreter Sequence
30060085 X descriptors=C | ROI Observation Label
30060088 X descriptors=C | ROI Observation Description
300600A6 Z | ROI Interpreter
300600C2 U uids=K | Related Frame of Reference UID
30080024 D fullDates=K modifiedDates=C | Treatment Control Point Date
30080025 D fullDates=K modifiedDates=C | Treatment Control Point Time
30080054 X/D fullDates=K modifiedDates=C | First Treatment Date
30080056 X/D fullDates=K modifiedDates=C | Most Recent Treatment Date
30080105 X/Z device=K | Source Serial Number
30080162 D fullDates=K modifiedDates=C | Safe Position Exit Date
30080164 D fullDates=K modifiedDates=C | Safe Position Exit Time
30080166 D fullDates=K modifiedDates=C | Safe Position Return Date
30080168 D fullDates=K modifiedDates=C | Safe Position Return Time
30080250 X/D fullDates=K modifiedDates=C | Treatment Date
30080251 X/D fullDates=K modifiedDates=C | Treatment Time
300A0002 D descriptors=C | RT Plan Label
300A0003 X descriptors=C | RT Plan Name
300A0004 X descriptors=C | RT Plan Description
300A0006 X/D fullDates=K modifiedDates=C | RT Plan Date
300A0007 X/D fullDates=K modifiedDates=C | RT Plan Time
300A000B X descriptors=C | Treatment Sites
300A000E X descriptors=C | Prescription Description
300A0013 U uids=K | Dose Reference UID
300A0016 X descriptors=C | Dose Reference Description
300A0072 X descriptors=C | Fraction Group Description
300A0083 U uids=K | Referenced Dose Reference UID
300A00B2 X/Z device=K | Treatment Machine Name
300A00C3 X descriptors=C | Beam Description
300A00DD X descriptors=C | Bolus Description
300A0196 X descriptors=C | Fixation Device Description
300A01A6 X descriptors=C | Shielding Device Description
300A01B2 X descriptors=C | Setup Technique Description
300A0216 X device=K | Source Manufacturer
300A022C D fullDates=K modifiedDates=C | Source Strength Reference Date
300A022E D fullDates=K modifiedDates=C | Source Strength Reference Time
300A02EB X descriptors=C | Compensator Description
300A0608 D descriptors=C | Treatment Position Group Label
300A0609 U uids=K | Treatment Position Group UID
300A0611 Z | RT Accessory Holder Slot ID
300A0615 Z | RT Accessory Device Slot ID
300A0619 D descriptors=C | Radiation Dose Identification Label
300A0623 D descriptors=C | Radiation Dose In-Vivo Measurement Label
300A062A D descriptors=C | RT Tolerance Set Label
300A0650 U uids=K | Patient Setup UID
300A0676 X descriptors=C | Equipment Frame of Reference Description
300A067C D descriptors=C | Radiation Generation Mode Label
300A067D Z descriptors=C | Radiation Generation Mode Description
300A0700 U uids=K | Treatment Session UID
300A0734 D descriptors=C | Treatment Tolerance Violation Description
300A0736 D fullDates=K modifiedDates=C | Treatment Tolerance Violation DateTime
300A073A D fullDates=K modifiedDates=C | Recorded RT Control Point DateTime
300A0741 D fullDates=K modifiedDates=C | Interlock DateTime
300A0742 D descriptors=C | Interlock Description
300A0760 D fullDates=K modifiedDates=C | Override DateTime
300A0783 D descriptors=C | Interlock Origin Description
300A0785 U uids=K | Referenced Treatment Position Group UID
300A078E X descriptors=C | Patient Treatment Preparation Procedure Parameter Description
300A0792 X descriptors=C | Patient Treatment Preparation Method Description
300A0794 X descriptors=C | Patient Setup Photo Description
300A079A X descriptors=C | Displacement Reference Label
300C0113 X descriptors=C | Reason for Omission Description
300C0127 D device=K fullDates=K modifiedDates=C | Beam Hold Transition DateTime
300E0004 Z fullDates=K modifiedDates=C | Review Date
300E0005 Z fullDates=K modifiedDates=C | Review Time
300E0008 X/Z | Reviewer Name
30100006 U uids=K | Conceptual Volume UID
3010000B U uids=K | Referenced Conceptual Volume UID
3010000F Z descriptors=C | Conceptual Volume Combination Description
30100013 U uids=K | Constituent Conceptual Volume UID
30100015 U uids=K | Source Conceptual Volume UID
30100017 Z descriptors=C | Conceptual Volume Description
3010001B Z | Device Alternate Identifier
3010002D D device=K | Device Label
30100031 U uids=K | Referenced Fiducials UID
30100033 D descriptors=C | User Content Label
30100034 D descriptors=C | User Content Long Label
30100035 D descriptors=C | Entity Label
30100036 X descriptors=C | Entity Name
30100037 X descriptors=C | Entity Description
30100038 D descriptors=C | Entity Long Label
3010003B U uids=K | RT Treatment Phase UID
30100043 Z device=K | Manufacturer's Device Identifier
3010004C X/D fullDates=K modifiedDates=C | Intended Phase Start Date
3010004D X/D fullDates=K modifiedDates=C | Intended Phase End Date
30100054 D descriptors=C | RT Prescription Label
30100056 X/D descriptors=C | RT Treatment Approach Label
3010005A Z descriptors=C | RT Physician Intent Narrative
3010005C Z descriptors=C | Reason for Superseding
30100061 X descriptors=C | Prior Treatment Dose Description
3010006E U uids=K | Dosimetric Objective UID
3010006F U uids=K | Referenced Dosimetric Objective UID
30100077 X/D descriptors=C | Treatment Site
3010007A Z descriptors=C | Treatment Technique Notes
3010007B Z descriptors=C | Prescription Notes
3010007F Z descriptors=C | Fractionation Notes
30100081 Z descriptors=C | Prescription Notes Sequence
30100085 X fullDates=K modifiedDates=C | Intended Fraction Start Time
40000010 X | Arbitrary
40004000 X | Text Comments
40080040 X | Results ID
40080042 X | Results ID Issuer
40080100 X fullDates=K modifiedDates=C | Interpretation Recorded Date
40080101 X fullDates=K modifiedDates=C | Interpretation Recorded Time
40080102 X | Interpretation Recorder
40080108 X fullDates=K modifiedDates=C | Interpretation Transcription Date
40080109 X fullDates=K modifiedDates=C | Interpretation Transcription Time
4008010A X | Interpretation Transcriber
4008010B X descriptors=C | Interpretation Text
4008010C X | Interpretation Author
40080111 X | Interpretation Approver Sequence
40080112 X fullDates=K modifiedDates=C | Interpretation Approval Date
40080113 X fullDates=K modifiedDates=C | Interpretation Approval Time
40080114 X | Physician Approving Interpretation
40080115 X descriptors=C | Interpretation Diagnosis Description
40080118 X | Results Distribution List Sequence
40080119 X | Distribution Name
4008011A X | Distribution Address
40080200 X | Interpretation ID
40080202 X | Interpretation ID Issuer
40080300 X descriptors=C | Impressions
40084000 X descriptors=C | Results Comments
50XXXXXX X graphics=C | Curve Data
60XX3000 X graphics=C | Overlay Data
60XX4000 X graphics=C | Overlay Comments
FFFAFFFA X | Digital Signatures Sequence
FFFCFFFC X | Data Set Trailing Padding
ODDGROUP X private=C | Private Attributes
`;

const basicActions: ReadonlySet<string> = new Set(['D', 'Z', 'X', 'K', 'C', 'U', 'X/Z', 'X/D', 'Z/D', 'X/Z/D', 'X/Z/U*']);

function parseTable(text: string): ProfileAttribute[] {
  const out: ProfileAttribute[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const [codes, name] = line.split(' | ');
    const [tag, basic, ...opts] = codes!.split(' ');
    if (!/^([0-9A-FX]{8}|ODDGROUP)$/.test(tag!) || !basicActions.has(basic!) || name === undefined) throw new Error(`Annex E table: bad line ${line}`);
    const options: Partial<Record<ProfileOption, OptionAction>> = {};
    for (const o of opts) {
      const [option, action] = o.split('=');
      if (!profileOptions.includes(option as ProfileOption) || (action !== 'K' && action !== 'C')) throw new Error(`Annex E table: bad option ${o}`);
      options[option as ProfileOption] = action;
    }
    out.push({ tag: tag!, name, basic: basic as BasicAction, options });
  }
  return out;
}

/** Table E.1-1, every attribute. */
export const annexETable: readonly ProfileAttribute[] = parseTable(table);

const byTag = new Map<Tag, ProfileAttribute>();
for (const a of annexETable) if (!a.tag.includes('X')) byTag.set(parseInt(a.tag, 16) >>> 0, a);
const curveData = annexETable.find((a) => a.tag === '50XXXXXX')!;
const overlayData = annexETable.find((a) => a.tag === '60XX3000')!;
const overlayComments = annexETable.find((a) => a.tag === '60XX4000')!;
const privateAttributes = annexETable.find((a) => a.tag === 'ODDGROUP')!;

/** The table's entry for a tag (repeating groups included), or undefined when the table does not list it. */
export function profileAttributeOf(t: Tag): ProfileAttribute | undefined {
  const found = byTag.get(t);
  if (found) return found;
  const group = t >>> 16;
  const element = t & 0xffff;
  if ((group & 1) === 1) return privateAttributes;
  if ((group & 0xff01) === 0x5000) return curveData;
  if ((group & 0xff01) === 0x6000 && element === 0x3000) return overlayData;
  if ((group & 0xff01) === 0x6000 && element === 0x4000) return overlayComments;
  return undefined;
}

/** What Atrium does with one attribute: one of the table's single actions. */
export type Action = 'D' | 'Z' | 'X' | 'K' | 'C' | 'U';

/**
 * The action for an attribute under the options a project chose. An option that keeps (K)
 * wins over one that cleans (C), which wins over the basic action. Where the table leaves a
 * choice, Atrium takes the one that keeps the object valid without keeping the value:
 * X/Z, Z/D and X/Z/D give Z (an empty value of a Type 2 attribute stays valid; a Type 1 one
 * would want D, and a dummy carries no more than an empty value), X/D gives X, and X/Z/U*
 * (reference sequences) gives U: the sequence is kept and every UID in it replaced.
 */
export function resolveAction(attribute: ProfileAttribute, options: ReadonlySet<ProfileOption>): Action {
  let chosen: OptionAction | undefined;
  for (const [option, action] of Object.entries(attribute.options) as Array<[ProfileOption, OptionAction]>) {
    if (!options.has(option)) continue;
    if (action === 'K' || chosen === undefined) chosen = action;
  }
  if (chosen) return chosen;
  switch (attribute.basic) {
    case 'X/Z': case 'Z/D': case 'X/Z/D': return 'Z';
    case 'X/D': return 'X';
    case 'X/Z/U*': return 'U';
    default: return attribute.basic;
  }
}
