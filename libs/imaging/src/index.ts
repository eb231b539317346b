export * from './image-format';
export * from './image-inspector';
export * from './image-decoder';
export * from './model-input';
export * from './face-alignment';
export * from './heic/heic-decoder';
