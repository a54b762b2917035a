// The last step of bench/readme-walk.sh: the demo radiologist logs in, searches "martin", opens
// the first patient and the exam, and waits until the first viewport's canvas is not black.
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(path.join(process.cwd(), 'package.json'));
const { chromium } = require('playwright-core');
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu'] });
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(180_000);
  await page.goto(process.env.PORTAL);
  await page.locator('input[name=login]').fill('demo.radiologue');
  await page.locator('input[name=password]').fill(process.env.DEMO_PASSWORD);
  await page.locator('button[type=submit]').click();
  await page.getByTestId('who').waitFor();
  await page.locator('input[name=name]').fill('martin');
  await page.locator('input[name=name]').press('Enter');
  await page.getByTestId('patients').locator('tbody tr').first().click();
  await page.getByTestId('open-study').first().click();
  await page.waitForFunction(() => {
    const c = document.querySelector('[data-testid=viewport-0] canvas');
    if (!c || c.width === 0) return false;
    const copy = document.createElement('canvas');
    copy.width = c.width; copy.height = c.height;
    const ctx = copy.getContext('2d');
    ctx.drawImage(c, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    for (let i = 0; i < d.length; i += 4 * 97) if (d[i] + d[i + 1] + d[i + 2] > 30) return true;
    return false;
  });
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT });
} finally {
  await browser.close();
}
