/**
 * Frees an image's bytes now instead of at V8's next full collection: detaches the Buffer's ArrayBuffer
 * (`ArrayBuffer.prototype.transfer(0)`, ES2024, Node ≥ 21), which drops its backing store at once. Why: a request's
 * body lives for the whole wait (seconds), so its ArrayBuffer is promoted to the old generation and, once the request
 * ends, waits for a major GC, which V8 starts only after ~64 MB more of such external memory. Under a burst the API
 * so held the bodies of finished requests beside those of new ones: every body of a 1,000-request burst was in
 * memory by its end, not the MAX_UPLOAD_BYTES_IN_FLIGHT the upload budget admits (`npm run bench -- memory`).
 *
 * Only a Buffer that is the sole, whole view of its own ArrayBuffer is detached (Buffer.concat and Buffer.from of a
 * body above 4 KB make one; a slice of Node's shared 8 KB pool or of a socket chunk is left to the GC, since
 * detaching it would empty its neighbours). The caller guarantees nothing still reads the bytes: no pending
 * native work (sharp, fs, a socket write) holds their memory. Afterwards the Buffer's length is 0.
 *
 * @returns bytes freed (0 when the Buffer is not detachable or the runtime lacks `transfer`)
 */
export function releaseBytes(bytes: Buffer): number {
  const arrayBuffer = bytes.buffer as ArrayBuffer & { transfer?: (length: number) => ArrayBuffer; detached?: boolean };
  if (typeof arrayBuffer.transfer !== 'function' || arrayBuffer.detached) return 0;
  if (bytes.byteOffset !== 0 || bytes.byteLength !== arrayBuffer.byteLength || bytes.byteLength === 0) return 0;
  const freed = bytes.byteLength;
  arrayBuffer.transfer(0);
  return freed;
}
