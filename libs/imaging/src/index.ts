export * from './image-format';
export * from './image-inspector';
export * from './model-input';
export * from './face-alignment';
