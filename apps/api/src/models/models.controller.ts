import { Controller, Get } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ModelListDto } from './models.dto';
import { ModelDirectory } from './model-directory';

@ApiTags('models')
@Controller('v1/models')
export class ModelsController {
  constructor(private readonly directory: ModelDirectory) {}

  @Get()
  @ApiOperation({ summary: 'The models in the manifest, and how many live workers have each loaded' })
  @ApiOkResponse({ type: ModelListDto })
  async list(): Promise<ModelListDto> {
    const workers = await this.directory.liveWorkers();
    return {
      models: this.directory.catalog.list().map((model) => ({
        name: model.name,
        task: model.task,
        description: model.description,
        file: model.file,
        sha256: model.sha256,
        input: model.input,
        outputs: model.outputs,
        preprocess: model.preprocess,
        postprocess: model.postprocess,
        labels: model.labels ?? null,
        classes: model.labelList.length,
        maxBatchSize: model.maxBatchSize,
        licence: model.licence,
        source: model.source,
        loadedBy: workers.filter((worker) => worker.models.includes(model.name)).length,
        loaded: workers.some((worker) => worker.models.includes(model.name)),
      })),
      workers: workers.map((worker) => ({ workerId: worker.workerId, models: worker.models, startedAt: new Date(worker.startedAt).toISOString(), eventLoopDelayP99Ms: worker.eventLoopDelayP99Ms })),
    };
  }
}
