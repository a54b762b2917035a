/**
 * A streaming ZIP writer (PKWARE APPNOTE 6.3), store method only: DICOM objects are
 * exported byte for byte and compress poorly anyway. Nothing is held but one entry's
 * bytes when the caller hands them whole; ZIP64 fields appear where a size or an
 * offset no longer fits in 32 bits.
 */
import { crc32 } from 'node:zlib';

export interface ZipEntry {
  /** Path inside the archive, components separated by "/". */
  name: string;
  /** Bytes of the entry, known before it is written (the index knows every object's size). */
  size: number;
  /**
   * Whole bytes: the CRC goes in the local header. A stream: its CRC is computed on the way
   * and written in a data descriptor after the bytes (general purpose flag bit 3).
   */
  data: Buffer | AsyncIterable<Buffer>;
}

export interface ZipOptions {
  /** Modification time written for every entry (default: now). */
  modified?: Date;
  /** 'always' writes ZIP64 fields for every entry and the end record (tests, and readers that prefer it). */
  zip64?: 'auto' | 'always';
}

export class ZipSizeError extends Error {
  constructor(readonly entry: string, readonly expected: number, readonly actual: number) {
    super(`zip entry ${entry}: expected ${expected} bytes, read ${actual}`);
    this.name = 'ZipSizeError';
  }
}

const LOCAL_HEADER = 0x04034b50;
const CENTRAL_HEADER = 0x02014b50;
const DATA_DESCRIPTOR = 0x08074b50;
const END_OF_CENTRAL_DIRECTORY = 0x06054b50;
const ZIP64_END_OF_CENTRAL_DIRECTORY = 0x06064b50;
const ZIP64_END_LOCATOR = 0x07064b50;
const ZIP64_EXTRA = 0x0001;
const FLAG_DATA_DESCRIPTOR = 0x0008;
const FLAG_UTF8_NAME = 0x0800;
const MAX32 = 0xffffffff;
const MAX16 = 0xffff;
/** Version 2.0 (stored entries, folders), 4.5 with ZIP64; "made by" Unix so the mode is read. */
const VERSION_DEFAULT = 20;
const VERSION_ZIP64 = 45;
const MADE_BY_UNIX = 3 << 8;
/** -rw-r--r-- regular file, in the high half of the external attributes (Unix). */
const EXTERNAL_ATTRIBUTES = (0o100644 << 16) >>> 0;

interface Written {
  name: Buffer;
  flags: number;
  crc: number;
  size: number;
  offset: number;
  zip64: boolean;
}

/** The archive's bytes, entry after entry, then the central directory. */
export async function* writeZip(entries: AsyncIterable<ZipEntry> | Iterable<ZipEntry>, options: ZipOptions = {}): AsyncGenerator<Buffer> {
  const always = options.zip64 === 'always';
  const { time, date } = dosDateTime(options.modified ?? new Date());
  const written: Written[] = [];
  let offset = 0;

  for await (const entry of entries) {
    const name = Buffer.from(entry.name, 'utf8');
    const ascii = name.length === entry.name.length;
    const streamed = !Buffer.isBuffer(entry.data);
    const zip64 = always || entry.size >= MAX32;
    const flags = (streamed ? FLAG_DATA_DESCRIPTOR : 0) | (ascii ? 0 : FLAG_UTF8_NAME);
    const crc = streamed ? 0 : crc32(entry.data as Buffer);
    if (!streamed && (entry.data as Buffer).length !== entry.size) throw new ZipSizeError(entry.name, entry.size, (entry.data as Buffer).length);

    // With a data descriptor, CRC and sizes in the local header are zero (APPNOTE 4.4.4);
    // ZIP64 puts 0xFFFFFFFF there and the sizes in the extra field.
    const knownSize = streamed ? 0 : entry.size;
    const extra = zip64 ? zip64Extra([knownSize, knownSize]) : Buffer.alloc(0);
    const header = Buffer.alloc(30);
    header.writeUInt32LE(LOCAL_HEADER, 0);
    header.writeUInt16LE(zip64 ? VERSION_ZIP64 : VERSION_DEFAULT, 4);
    header.writeUInt16LE(flags, 6);
    header.writeUInt16LE(0, 8); // stored
    header.writeUInt16LE(time, 10);
    header.writeUInt16LE(date, 12);
    header.writeUInt32LE(crc, 14);
    header.writeUInt32LE(zip64 ? MAX32 : knownSize, 18);
    header.writeUInt32LE(zip64 ? MAX32 : knownSize, 22);
    header.writeUInt16LE(name.length, 26);
    header.writeUInt16LE(extra.length, 28);
    const record: Written = { name, flags, crc, size: entry.size, offset, zip64 };
    yield Buffer.concat([header, name, extra]);
    offset += header.length + name.length + extra.length;

    if (!streamed) {
      if (entry.size > 0) yield entry.data as Buffer;
      offset += entry.size;
    } else {
      let running = 0;
      let size = 0;
      for await (const chunk of entry.data as AsyncIterable<Buffer>) {
        running = crc32(chunk, running);
        size += chunk.length;
        if (size > entry.size) throw new ZipSizeError(entry.name, entry.size, size);
        yield chunk;
      }
      if (size !== entry.size) throw new ZipSizeError(entry.name, entry.size, size);
      record.crc = running;
      const descriptor = Buffer.alloc(zip64 ? 24 : 16);
      descriptor.writeUInt32LE(DATA_DESCRIPTOR, 0);
      descriptor.writeUInt32LE(running, 4);
      if (zip64) {
        descriptor.writeBigUInt64LE(BigInt(size), 8);
        descriptor.writeBigUInt64LE(BigInt(size), 16);
      } else {
        descriptor.writeUInt32LE(size, 8);
        descriptor.writeUInt32LE(size, 12);
      }
      yield descriptor;
      offset += size + descriptor.length;
    }
    written.push(record);
  }

  const directoryOffset = offset;
  let directorySize = 0;
  for (const w of written) {
    const bigSize = always || w.size >= MAX32;
    const bigOffset = always || w.offset >= MAX32;
    const fields: number[] = [];
    if (bigSize) fields.push(w.size, w.size);
    if (bigOffset) fields.push(w.offset);
    const extra = fields.length > 0 ? zip64Extra(fields) : Buffer.alloc(0);
    const h = Buffer.alloc(46);
    h.writeUInt32LE(CENTRAL_HEADER, 0);
    h.writeUInt16LE(MADE_BY_UNIX | VERSION_ZIP64, 4);
    h.writeUInt16LE(w.zip64 || bigOffset ? VERSION_ZIP64 : VERSION_DEFAULT, 6);
    h.writeUInt16LE(w.flags, 8);
    h.writeUInt16LE(0, 10);
    h.writeUInt16LE(time, 12);
    h.writeUInt16LE(date, 14);
    h.writeUInt32LE(w.crc, 16);
    h.writeUInt32LE(bigSize ? MAX32 : w.size, 20);
    h.writeUInt32LE(bigSize ? MAX32 : w.size, 24);
    h.writeUInt16LE(w.name.length, 28);
    h.writeUInt16LE(extra.length, 30);
    h.writeUInt16LE(0, 32); // comment
    h.writeUInt16LE(0, 34); // disk
    h.writeUInt16LE(0, 36); // internal attributes
    h.writeUInt32LE(EXTERNAL_ATTRIBUTES, 38);
    h.writeUInt32LE(bigOffset ? MAX32 : w.offset, 42);
    const b = Buffer.concat([h, w.name, extra]);
    directorySize += b.length;
    yield b;
  }

  const count = written.length;
  const needs64 = always || count >= MAX16 || directorySize >= MAX32 || directoryOffset >= MAX32;
  const tail: Buffer[] = [];
  if (needs64) {
    const end64 = Buffer.alloc(56);
    end64.writeUInt32LE(ZIP64_END_OF_CENTRAL_DIRECTORY, 0);
    end64.writeBigUInt64LE(44n, 4); // size of the rest of this record
    end64.writeUInt16LE(MADE_BY_UNIX | VERSION_ZIP64, 12);
    end64.writeUInt16LE(VERSION_ZIP64, 14);
    end64.writeUInt32LE(0, 16);
    end64.writeUInt32LE(0, 20);
    end64.writeBigUInt64LE(BigInt(count), 24);
    end64.writeBigUInt64LE(BigInt(count), 32);
    end64.writeBigUInt64LE(BigInt(directorySize), 40);
    end64.writeBigUInt64LE(BigInt(directoryOffset), 48);
    const locator = Buffer.alloc(20);
    locator.writeUInt32LE(ZIP64_END_LOCATOR, 0);
    locator.writeUInt32LE(0, 4);
    locator.writeBigUInt64LE(BigInt(directoryOffset + directorySize), 8);
    locator.writeUInt32LE(1, 16);
    tail.push(end64, locator);
  }
  const end = Buffer.alloc(22);
  end.writeUInt32LE(END_OF_CENTRAL_DIRECTORY, 0);
  end.writeUInt16LE(0, 4);
  end.writeUInt16LE(0, 6);
  end.writeUInt16LE(needs64 && count >= MAX16 ? MAX16 : count, 8);
  end.writeUInt16LE(needs64 && count >= MAX16 ? MAX16 : count, 10);
  end.writeUInt32LE(needs64 && directorySize >= MAX32 ? MAX32 : directorySize, 12);
  end.writeUInt32LE(needs64 && (always || directoryOffset >= MAX32) ? MAX32 : directoryOffset, 16);
  end.writeUInt16LE(0, 20);
  tail.push(end);
  yield Buffer.concat(tail);
}

/** The ZIP64 extended information extra field with the given 8-byte values, in APPNOTE order. */
function zip64Extra(values: number[]): Buffer {
  const b = Buffer.alloc(4 + 8 * values.length);
  b.writeUInt16LE(ZIP64_EXTRA, 0);
  b.writeUInt16LE(8 * values.length, 2);
  values.forEach((v, i) => b.writeBigUInt64LE(BigInt(v), 4 + 8 * i));
  return b;
}

/** MS-DOS date and time (local time, 2-second resolution, from 1980). */
function dosDateTime(d: Date): { time: number; date: number } {
  const year = Math.min(Math.max(d.getFullYear(), 1980), 2107);
  return {
    time: (d.getHours() << 11) | (d.getMinutes() << 5) | Math.floor(d.getSeconds() / 2),
    date: ((year - 1980) << 9) | ((d.getMonth() + 1) << 5) | d.getDate(),
  };
}
