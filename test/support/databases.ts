import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { DatabaseConfig } from '../../src/index/sql.ts';

export interface TestDatabase {
  name: 'sqlite' | 'postgres';
  /** A fresh, empty database; cleanup removes it. */
  open: () => Promise<{ config: DatabaseConfig; cleanup: () => Promise<void> }>;
}

let warned = false;

/**
 * The engines every index test runs on: SQLite always (a temporary file), PostgreSQL
 * when DATABASE_URL is set (a fresh schema per open, dropped on cleanup).
 */
export function testDatabases(): TestDatabase[] {
  const engines: TestDatabase[] = [
    {
      name: 'sqlite',
      open: async () => {
        const dir = await mkdtemp(join(tmpdir(), 'atrium-index-'));
        return {
          config: { engine: 'sqlite', path: join(dir, 'index.sqlite') },
          cleanup: () => rm(dir, { recursive: true, force: true }),
        };
      },
    },
  ];
  const url = process.env.DATABASE_URL;
  if (url) {
    engines.push({
      name: 'postgres',
      open: async () => {
        const schema = `t_${randomBytes(6).toString('hex')}`;
        return {
          config: { engine: 'postgres', url, schema },
          cleanup: async () => {
            const client = new pg.Client({ connectionString: url });
            await client.connect();
            try {
              await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
            } finally {
              await client.end();
            }
          },
        };
      },
    });
  } else if (!warned) {
    warned = true;
    console.warn(
      '\n*** DATABASE_URL is not set: PostgreSQL tests were SKIPPED, only SQLite was tested. ***\n' +
        '*** Set DATABASE_URL=postgres://user@host:5432/db to run them. ***\n',
    );
  }
  return engines;
}
