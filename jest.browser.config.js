// `npm run test:browser`: the web page in headless Debian Chromium (playwright-core, no browser download).
// Kept out of `npm test` because it needs /usr/bin/chromium; CI installs it and runs this after `npm test`.
module.exports = {
  testEnvironment: 'node',
  rootDir: 'dist',
  testTimeout: 180000,
  displayName: 'browser',
  testMatch: ['<rootDir>/test/browser/**/*.browser-spec.js'],
};
