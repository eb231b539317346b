import { AppError, ErrorCode } from '@app/contracts';
import { isSha256 } from '@app/storage';

/** Image ids are sha256 hex, nothing else: this also keeps paths like ../../etc/passwd out of every :hash route. */
export function requireImageHash(hash: string): void {
  if (!isSha256(hash)) throw new AppError(ErrorCode.InvalidParameter, 'an image id is the lowercase hex sha256 of the image (64 characters)');
}
