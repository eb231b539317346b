import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode } from '@app/contracts';

// The page (copied next to the compiled API by the build) must explain every error code the API can return.
describe('web page error messages', () => {
  const script = readFileSync(join(__dirname, '..', 'web', 'app.js'), 'utf8');

  it.each(Object.values(ErrorCode))('has a plain-language message for %s', (code) => {
    expect(script).toMatch(new RegExp(`^\\s+${code}: '[^']{8,}',$`, 'm'));
  });
});
