import { CliFlags } from './cli-flags';

describe('CliFlags', () => {
  const allowed = ['faces', 'queries', 'crossover'];

  it('reads --name value and bare --flag', () => {
    const flags = new CliFlags(['--faces', '2000', '--crossover'], allowed, {});
    expect([flags.positive('faces'), flags.get('crossover'), flags.get('queries')]).toEqual([2000, 'true', undefined]);
  });

  it('reads back a flag npm took as its own (npm run bench faces --faces 2000, without --)', () => {
    // What npm 11 hands the script: the value as a bare argument, the flag as npm_config_faces=true.
    expect(new CliFlags(['2000'], allowed, { npm_config_faces: 'true' }).positive('faces')).toBe(2000);
    expect(new CliFlags([], allowed, { npm_config_faces: '2000' }).positive('faces')).toBe(2000);
    expect(new CliFlags([], allowed, { npm_config_crossover: 'true' }).get('crossover')).toBe('true');
  });

  it('refuses what cannot be paired, saying how to write it', () => {
    expect(() => new CliFlags(['2000', '50'], allowed, { npm_config_faces: 'true', npm_config_queries: 'true' })).toThrow(/put -- before the flags/);
    expect(() => new CliFlags(['2000'], allowed, {})).toThrow('unexpected argument 2000');
    expect(() => new CliFlags(['--size', '3'], allowed, {})).toThrow('unknown option --size');
  });
});
