/** `--name value` and bare `--flag` arguments of the bench scripts, read one way. */
export class CliFlags {
  private readonly values = new Map<string, string>();

  /**
   * `env`: where npm leaves the flags it took as its own. `npm run bench faces --faces 2000` (no `--` before the
   * flags, as the issue wrote it) gives the script `faces 2000` and sets npm_config_faces=true (`--faces=2000`
   * sets npm_config_faces=2000): an allowed flag found there is read back, and one bare value pairs with one
   * such flag; more than one is ambiguous (npm does not keep their order) and is refused saying how to write it.
   */
  constructor(argv: string[], allowed?: string[], env: NodeJS.ProcessEnv = process.env) {
    const bare: string[] = [];
    for (let i = 0; i < argv.length; i++) {
      const key = argv[i];
      if (!key.startsWith('--')) {
        bare.push(key);
        continue;
      }
      const next = argv[i + 1];
      this.values.set(key.slice(2), next === undefined || next.startsWith('--') ? 'true' : argv[++i]);
    }
    const valueless: string[] = [];
    for (const name of allowed ?? []) {
      const value = env[`npm_config_${name.replaceAll('-', '_')}`];
      if (this.values.has(name) || value === undefined) continue;
      if (value === 'true') valueless.push(name);
      else this.values.set(name, value);
    }
    if (valueless.length === 1 && bare.length === 1) this.values.set(valueless[0], bare.pop()!);
    else for (const name of valueless) this.values.set(name, 'true');
    if (bare.length > 0) {
      const npm = valueless.length > 0 ? ` (npm took ${valueless.map((name) => `--${name}`).join(' ')} as its own options: put -- before the flags, e.g. npm run bench -- faces --faces 2000)` : '';
      throw new Error(`unexpected argument ${bare[0]}${npm}`);
    }
    const unknown = allowed ? [...this.values.keys()].filter((name) => !allowed.includes(name)) : [];
    if (unknown.length > 0) throw new Error(`unknown option --${unknown[0]}; known: ${allowed!.map((name) => `--${name}`).join(' ')}`);
  }

  get(name: string): string | undefined {
    return this.values.get(name);
  }

  /** A positive number, or `fallback` when the flag is absent. */
  positive(name: string, fallback: number): number;
  positive(name: string): number | undefined;
  positive(name: string, fallback?: number): number | undefined {
    const value = this.values.get(name);
    if (value === undefined) return fallback;
    const parsed = Number(value);
    if (!Number.isFinite(parsed) || parsed <= 0) throw new Error(`--${name} must be a positive number`);
    return parsed;
  }
}
