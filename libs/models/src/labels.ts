import { readFileSync } from 'node:fs';

/**
 * Reads a label file: Keras-style `imagenet_class_index.json` ({"0": ["n01440764", "tench"], ...})
 * or a plain text file with one label per line.
 */
export function readLabels(path: string): string[] {
  const text = readFileSync(path, 'utf8');
  if (path.endsWith('.json')) {
    const index = JSON.parse(text) as Record<string, [string, string] | string>;
    const labels: string[] = [];
    for (const [key, value] of Object.entries(index)) labels[Number(key)] = Array.isArray(value) ? value[1] : value;
    return labels;
  }
  return text.split('\n').map((line) => line.trim()).filter((line) => line.length > 0);
}
