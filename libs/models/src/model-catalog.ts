import { createHash } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { AppError, echoed, ErrorCode } from '@app/contracts';
import { ManifestEntry, manifestSchema, ModelTask } from './manifest';
import { readLabels } from './labels';

export interface CatalogModel extends ManifestEntry {
  /** Absolute path of the weights. */
  path: string;
  /** Height and width are chosen per image (shape −1): every run states its input size, and a batch runs one size at a time. */
  dynamicInput: boolean;
  /** Effective batch limits after the fixed-batch rule and environment overrides. */
  maxBatchSize: number;
  maxBatchDelayMs: number;
  labelList: string[];
}

export interface BatchOverrides {
  maxBatchSize?: number;
  maxBatchDelayMs?: number;
}

/** The models described by models/manifest.json. The API reads it to validate names; the worker also verifies weights. */
export class ModelCatalog {
  private readonly byName: Map<string, CatalogModel>;

  private constructor(
    readonly dir: string,
    models: CatalogModel[],
  ) {
    this.byName = new Map(models.map((model) => [model.name, model]));
  }

  static load(modelsDir: string, overrides: BatchOverrides = {}): ModelCatalog {
    const dir = resolve(modelsDir);
    const manifestPath = resolve(dir, 'manifest.json');
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(manifestPath, 'utf8'));
    } catch (error) {
      throw new Error(`Cannot read model manifest ${manifestPath}: ${(error as Error).message}`);
    }
    const parsed = manifestSchema.safeParse(raw);
    if (!parsed.success) throw new Error(`Invalid model manifest ${manifestPath}: ${parsed.error.message}`);
    const models = parsed.data.models.map((entry): CatalogModel => {
      const dynamicInput = entry.input.shape[2] < 0;
      const fixedBatch = entry.input.shape[0] > 0 ? entry.input.shape[0] : undefined;
      const wanted = overrides.maxBatchSize ?? entry.batch.maxSize;
      return {
        ...entry,
        path: resolve(dir, entry.file),
        dynamicInput,
        maxBatchSize: fixedBatch ?? wanted,
        maxBatchDelayMs: overrides.maxBatchDelayMs ?? entry.batch.maxDelayMs,
        labelList: entry.labels ? readLabels(resolve(dir, entry.labels)) : [],
      };
    });
    return new ModelCatalog(dir, models);
  }

  get names(): string[] {
    return [...this.byName.keys()];
  }

  list(): CatalogModel[] {
    return [...this.byName.values()];
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** The model, or UNKNOWN_MODEL naming the valid ones (optionally only those of one task). */
  get(name: string, task?: ModelTask): CatalogModel {
    const model = this.byName.get(name);
    if (!model) {
      throw new AppError(ErrorCode.UnknownModel, `unknown model ${echoed(name)}; valid models: ${this.namesFor(task).join(', ')}`, {
        validModels: this.namesFor(task),
      });
    }
    if (task && model.task !== task) {
      throw new AppError(ErrorCode.ModelTaskMismatch, `model "${name}" is a ${model.task} model; use one of: ${this.namesFor(task).join(', ')}`, {
        validModels: this.namesFor(task),
      });
    }
    return model;
  }

  namesFor(task?: ModelTask): string[] {
    return this.list().filter((model) => !task || model.task === task).map((model) => model.name);
  }

  /** Checks every weight file against the manifest's sha256; throws naming each mismatch. */
  async verifyWeights(): Promise<void> {
    const problems: string[] = [];
    await Promise.all(
      this.list().map(async (model) => {
        try {
          const actual = await sha256File(model.path);
          if (actual !== model.sha256) problems.push(`${model.name}: ${model.file} has sha256 ${actual}, manifest says ${model.sha256}`);
        } catch (error) {
          problems.push(`${model.name}: cannot read ${model.path}: ${(error as Error).message}`);
        }
      }),
    );
    if (problems.length > 0) throw new Error(`Model weights failed verification:\n  ${problems.join('\n  ')}`);
  }
}

function sha256File(path: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('error', reject)
      .on('data', (chunk) => hash.update(chunk))
      .on('end', () => resolvePromise(hash.digest('hex')));
  });
}
