import type { CatalogModel } from '../model-catalog';
import type { ModelOutputs } from '../model-executor';
import type { ModelTask } from '../manifest';
import { classificationPredictions } from './classification';
import type { InputGeometry } from '../input-geometry';
import { decodeYolox, decodeYunet } from './detection';

export * from './classification';
export * from './detection';

type TaskPostprocessor = (model: CatalogModel, outputs: ModelOutputs, geometry: InputGeometry) => unknown;

/** The one place that maps a task to its post-processor. A new task type is one entry here. */
const POSTPROCESSORS: Record<ModelTask, TaskPostprocessor> = {
  classification: (model, outputs) => ({ predictions: classificationPredictions(outputs[model.outputs[0]], model.postprocess.activation, 5, model.labelList) }),
  'object-detection': (model, outputs, geometry) => ({
    objects: decodeYolox(outputs[model.outputs[0]], geometry, model.labelList, model.postprocess.scoreThreshold, model.postprocess.iouThreshold),
  }),
  'face-embedding': (model, outputs) => ({ embedding: Array.from(unitLength(outputs[model.outputs[0]])) }),
  'face-detection': (model, outputs, geometry) => ({ faces: decodeYunet(outputs, geometry, model.postprocess.scoreThreshold, model.postprocess.iouThreshold) }),
};

export function postprocess(model: CatalogModel, outputs: ModelOutputs, geometry: InputGeometry): unknown {
  return POSTPROCESSORS[model.task](model, outputs, geometry);
}

/** L2-normalised copy: embeddings are compared by dot product (cosine similarity). */
export function unitLength(vector: Float32Array): Float32Array {
  let sum = 0;
  for (const value of vector) sum += value * value;
  const norm = Math.sqrt(sum) || 1;
  return vector.map((value) => value / norm);
}
