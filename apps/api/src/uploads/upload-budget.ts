import { Injectable } from '@nestjs/common';
import { AppConfig } from '@app/config';
import { ByteBudget } from './byte-budget';

/**
 * This API process's budget for image bytes held while multi-image uploads and URL fetches are read, checked
 * and stored (MAX_UPLOAD_BYTES_IN_FLIGHT, waiting at most UPLOAD_BUDGET_WAIT_MS): each image reserves
 * MAX_IMAGE_BYTES before it is read and gives it back once its bytes are stored.
 */
@Injectable()
export class UploadBudget extends ByteBudget {
  constructor(config: AppConfig) {
    super(config.values.MAX_UPLOAD_BYTES_IN_FLIGHT, config.values.UPLOAD_BUDGET_WAIT_MS);
  }
}
