import { Injectable } from '@nestjs/common';
import { AppConfig } from '@app/config';
import { ImageRef } from '@app/contracts';
import { CatalogModel, FaceDetection } from '@app/models';
import { FaceDetector } from '../faces/face-detector';
import { ImageRun, inferImage } from './infer-image';
import { ImageSource } from './image-source';
import { ModelHost } from './model-host';

/** The handlers' way to run a job's image through a model (see inferImage), or through a face detector's two passes. */
@Injectable()
export class ImageInference {
  constructor(
    private readonly models: ModelHost,
    private readonly images: ImageSource,
    private readonly config: AppConfig,
  ) {}

  run(model: CatalogModel, ref: ImageRef): Promise<ImageRun> {
    return this.runBytes(model, () => this.images.read(ref));
  }

  /** As run, with the bytes from `readBytes` (a classify-batch job reads all its items' bytes at once). */
  runBytes(model: CatalogModel, readBytes: () => Promise<Buffer>): Promise<ImageRun> {
    return inferImage(this.models.executor, model, readBytes, this.config.imageLimits);
  }

  /** Faces in image pixels, as POST /v1/faces finds them: both detector passes over one full-resolution decode. */
  async detectFaces(model: CatalogModel, ref: ImageRef): Promise<FaceDetection[]> {
    const bytes = await this.images.read(ref);
    return (await new FaceDetector(this.models.executor, model).decodeAndDetect(bytes, this.config.imageLimits)).faces;
  }
}
