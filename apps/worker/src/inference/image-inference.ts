import { Injectable } from '@nestjs/common';
import { AppConfig } from '@app/config';
import { ImageRef } from '@app/contracts';
import { ModelInput, prepareModelInput } from '@app/imaging';
import { BatchedResult, CatalogModel, ModelOutputs } from '@app/models';
import { ImageSource } from './image-source';
import { ModelHost } from './model-host';

export interface ImageRun {
  input: ModelInput;
  run: BatchedResult<ModelOutputs>;
}

/** One image through one model: read its bytes, decode them for the model, run it in the model's next batch. */
@Injectable()
export class ImageInference {
  constructor(
    private readonly models: ModelHost,
    private readonly images: ImageSource,
    private readonly config: AppConfig,
  ) {}

  async run(model: CatalogModel, ref: ImageRef): Promise<ImageRun> {
    // Announced before reading and decoding, so a batch forming meanwhile waits for this image, while a
    // lone image (nothing else on its way) runs without waiting for company.
    const arrival = this.models.executor.expect(model.name);
    try {
      const bytes = await this.images.read(ref);
      const input = await prepareModelInput(bytes, model.preprocess, this.config.values.MAX_IMAGE_PIXELS);
      return { input, run: await arrival.submit(input.tensor) };
    } finally {
      arrival.cancel();
    }
  }
}
