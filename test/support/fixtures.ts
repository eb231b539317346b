import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './app-process';

export const FIXTURES = join(REPO_ROOT, 'test', 'fixtures');

export function fixture(name: string): Buffer {
  return readFileSync(join(FIXTURES, name));
}

interface ExpectedTop5 {
  index: number;
  label: string;
  prob: number;
}

const expected = JSON.parse(readFileSync(join(FIXTURES, 'expected_results.json'), 'utf8')) as {
  classification: Record<string, { top5: Record<string, ExpectedTop5[]> }>;
};

const MODEL_FILES: Record<string, string> = { mobilenet_v2: 'mobilenetv2-12-int8.onnx', squeezenet1_1: 'squeezenet1.1_fp16.onnx' };

/** The verified top-5 of ../shared/models/expected_results.json (copied into test/fixtures). */
export function expectedTop5(model: string, image: string): ExpectedTop5[] {
  return expected.classification[MODEL_FILES[model]].top5[image];
}
