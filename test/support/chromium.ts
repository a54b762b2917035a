/**
 * Debian's Chromium driven by playwright-core (nothing downloaded): a fresh profile for each
 * browser, and screenshots saved under .tmp/ and checked to show something rather than a blank page.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { PNG } from 'pngjs';

export const chromiumPath = '/usr/bin/chromium';
export const haveChromium = existsSync(chromiumPath);
export const chromiumArgs = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-quic',
];

/** Distinct colours in a PNG: a blank or uniform viewport has one or two. */
export function distinctColours(png: Buffer): number {
  const image = PNG.sync.read(png);
  const seen = new Set<number>();
  for (let i = 0; i < image.data.length; i += 4) seen.add((image.data[i]! << 16) | (image.data[i + 1]! << 8) | image.data[i + 2]!);
  return seen.size;
}

/**
 * A mouse drag on an element's box through points given as fractions of its width and height
 * (a measurement drawn, a window changed): pressed at the first, moved to each next in `steps`, released at the last.
 */
export async function dragThrough(page: Page, box: { x: number; y: number; width: number; height: number }, points: ReadonlyArray<readonly [number, number]>, steps: number): Promise<void> {
  const at = ([fx, fy]: readonly [number, number]) => [box.x + box.width * fx, box.y + box.height * fy] as const;
  await page.mouse.move(...at(points[0]!));
  await page.mouse.down();
  for (const point of points.slice(1)) await page.mouse.move(...at(point), { steps });
  await page.mouse.up();
}

/** Browsers each with their own profile folder, closed and removed together. */
export class Browsers {
  private readonly contexts: BrowserContext[] = [];
  private readonly profiles: string[] = [];

  async open(options: { locale?: string; acceptDownloads?: boolean } = {}): Promise<Page> {
    const profile = mkdtempSync(path.join(tmpdir(), 'atrium-chromium-'));
    this.profiles.push(profile);
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: chromiumPath, headless: true, args: chromiumArgs, viewport: { width: 1280, height: 800 },
      acceptDownloads: options.acceptDownloads ?? true, locale: options.locale ?? 'fr-FR',
    });
    this.contexts.push(context);
    return context.pages()[0] ?? context.newPage();
  }

  async close(): Promise<void> {
    for (const c of this.contexts) await c.close().catch(() => {});
    for (const p of this.profiles) rmSync(p, { recursive: true, force: true });
  }
}

/** A folder of screenshots (emptied at start). */
export class Screenshots {
  constructor(readonly dir: string) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
  }

  async shoot(page: Page, name: string, region?: Locator): Promise<Buffer> {
    const png = region ? await region.screenshot() : await page.screenshot();
    writeFileSync(path.join(this.dir, `${name}.png`), png);
    return png;
  }

  /** A page's screenshot, checked to show more than a blank or uniform page. */
  async shootNonBlank(page: Page, name: string, minimumColours = 8): Promise<Buffer> {
    const png = await this.shoot(page, name);
    assert.ok(distinctColours(png) >= minimumColours, `${name}: the page looks blank (${distinctColours(png)} colours)`);
    return png;
  }

  /** Waits until the viewport shows an image (many grey levels), and returns its screenshot. */
  async renderedViewport(page: Page, name: string, region: Locator): Promise<Buffer> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const png = await region.screenshot();
      if (distinctColours(png) >= 32) {
        writeFileSync(path.join(this.dir, `${name}.png`), png);
        return png;
      }
      if (Date.now() > deadline) {
        writeFileSync(path.join(this.dir, `${name}-blank.png`), png);
        assert.fail(`${name}: the viewport stayed blank (${distinctColours(png)} colours)`);
      }
      await page.waitForTimeout(250);
    }
  }
}
