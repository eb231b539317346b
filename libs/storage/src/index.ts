export * from './content-store';
export * from './file-content-store';
export * from './analysis-store';
export * from './storage.module';
export * from './face-store';
export * from './face-snapshots';
export * from './image-erasure';
export * from './image-lock';
