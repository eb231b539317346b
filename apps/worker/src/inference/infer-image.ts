import { DecodeLimits, ModelInput, prepareModelInput } from '@app/imaging';
import { BatchedResult, CatalogModel, ModelExecutor, ModelOutputs } from '@app/models';

export interface ImageRun {
  input: ModelInput;
  run: BatchedResult<ModelOutputs>;
}

/**
 * One image through one model: read its bytes, decode them for the model, run it in the model's next batch.
 * The image is announced before it is read and decoded, so a batch forming meanwhile waits for it, while a
 * lone image (nothing else on its way) runs without waiting for company. The worker's handlers (through
 * ImageInference) and the benchmark's in-process pipeline both run images this way.
 */
export async function inferImage(executor: ModelExecutor, model: CatalogModel, readBytes: () => Promise<Buffer>, limits: DecodeLimits): Promise<ImageRun> {
  const arrival = executor.expect(model.name);
  try {
    const input = await prepareModelInput(await readBytes(), model.preprocess, limits);
    return { input, run: await arrival.submit(input.tensor, input.geometry) };
  } finally {
    arrival.cancel();
  }
}
