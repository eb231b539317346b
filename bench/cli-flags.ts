/** `--name value` and bare `--flag` arguments of the bench scripts, read one way. */
export class CliFlags {
  private readonly values = new Map<string, string>();

  constructor(argv: string[], allowed?: string[]) {
    for (let i = 0; i < argv.length; i++) {
      const key = argv[i];
      if (!key.startsWith('--')) throw new Error(`unexpected argument ${key}`);
      const next = argv[i + 1];
      this.values.set(key.slice(2), next === undefined || next.startsWith('--') ? 'true' : argv[++i]);
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
