// Jest runs the compiled JavaScript in dist/ (built by `npm run build`, which `npm test` calls first),
// so the inference worker thread and the spawned apps run exactly the code that ships.
const common = { testEnvironment: 'node', rootDir: 'dist' };
module.exports = {
  // e2e tests start real processes; unit tests finish in milliseconds either way.
  testTimeout: 180000,
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/{apps,libs,bench}/**/*.spec.js'] },
    { ...common, displayName: 'e2e', testMatch: ['<rootDir>/test/e2e/**/*.e2e-spec.js'] },
    // Fault injection and hostile input (A6): real processes broken on purpose. `npm run test:faults` runs only these.
    { ...common, displayName: 'faults', testMatch: ['<rootDir>/test/faults/**/*.fault-spec.js'] },
  ],
};
