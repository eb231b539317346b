import { Injectable } from '@nestjs/common';
import { AppConfig } from '@app/config';
import { ImageRef } from '@app/contracts';
import { CatalogModel } from '@app/models';
import { ImageRun, inferImage } from './infer-image';
import { ImageSource } from './image-source';
import { ModelHost } from './model-host';

/** The handlers' way to run a job's image through a model (see inferImage). */
@Injectable()
export class ImageInference {
  constructor(
    private readonly models: ModelHost,
    private readonly images: ImageSource,
    private readonly config: AppConfig,
  ) {}

  run(model: CatalogModel, ref: ImageRef): Promise<ImageRun> {
    return inferImage(this.models.executor, model, () => this.images.read(ref), this.config.values.MAX_IMAGE_PIXELS);
  }
}
