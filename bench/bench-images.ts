import { fixture } from '../test/support/fixtures';

/** The classify benches' images, sent in turn: an 800×480 JPEG and two PNGs (224×224 and a photo), with their types. */
export const BENCH_IMAGES = ['castle_image.jpg', 'cat_kitten_224.png', 'dog_beagle_jemma.png'].map((name) => ({
  name,
  bytes: fixture(name),
  type: name.endsWith('.png') ? 'image/png' : 'image/jpeg',
}));
