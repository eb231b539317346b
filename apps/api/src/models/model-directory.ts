import { Injectable } from '@nestjs/common';
import { AppConfig } from '@app/config';
import { WorkerHeartbeat } from '@app/contracts';
import { ModelCatalog } from '@app/models';
import { WorkerRegistry } from '@app/redis';

/**
 * What models exist (models/manifest.json, read without loading weights) and which ones live workers
 * have loaded (their heartbeats, found through WorkerRegistry without reading the keyspace).
 */
@Injectable()
export class ModelDirectory {
  readonly catalog: ModelCatalog;

  constructor(
    config: AppConfig,
    private readonly workers: WorkerRegistry,
  ) {
    this.catalog = ModelCatalog.load(config.values.MODELS_DIR);
  }

  /** Heartbeats of the workers alive now. */
  liveWorkers(): Promise<WorkerHeartbeat[]> {
    return this.workers.live();
  }
}
